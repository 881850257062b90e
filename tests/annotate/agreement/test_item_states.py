"""Issue 15: every item with any judgment is in exactly one state a person can see and act on
(pending with a reason, agreed, disputed, waiting for a manager, adjudicated), and the page for
that state lists it.

Seeded random sequences drive the real services: annotators answering what the queue hands
them (match, no match, unsure, challenge marks with and without the check), skipping and
undoing, gold set on
judged pairs, suspensions and reinstatements, raised limits, managers deciding items (through
the page, challenge-judged pairs included) and recomputes at random moments. After every
recompute each judged item must be in one state and on its list; once the crowd has done all
it may do and a recompute asks for nothing more, no item may be left pending or disputed:
everything is agreed, decided, or waiting for a manager on the "to decide" page.
"""

import contextlib
import hashlib
import random
import re

import pytest
from django.urls import reverse

from annotate.agreement.selectors import (
    ItemState,
    item_state_counts,
    items_in_state,
    items_listed,
)
from annotate.agreement.services.consensus import (
    consensus_recompute,
    item_adjudicate,
)
from annotate.agreement.services.suspensions import annotator_reinstate, annotator_suspend
from annotate.models import (
    RANDOM_KEY_MAX,
    ChallengeMark,
    ChallengeOption,
    ItemLabel,
    Judgment,
    Suspension,
    Task,
    TaskKind,
)
from annotate.queue.services.judgments import SubmitRefused, judgment_submit, judgment_undo
from annotate.queue.services.leases import assignment_get, lease_skip
from annotate.queue.services.pool import gold_set, tasks_open
from datasets.models import Caption, Image, Pair, PairKind, Project, Source
from tests import factories

pytestmark = pytest.mark.django_db

SEQUENCES = 24
PROPOSALS = 2


def _pairs(*, project: Project, images: int, per_image: int, tag: str) -> list[list[Pair]]:
    made = Image.objects.bulk_create(
        Image(
            project=project,
            file=f"states/{tag}{number}.jpg",
            sha256=hashlib.sha256(f"{project.pk}-{tag}-{number}".encode()).hexdigest(),
            width=64,
            height=48,
            format="JPEG",
            size_bytes=1,
            source=Source.UPLOAD,
        )
        for number in range(images)
    )
    captions = Caption.objects.bulk_create(
        Caption(image=image, text_raw=text, text=text, source=Source.API)
        for image in made
        for text in (f"caption {number} of {image.pk}" for number in range(per_image))
    )
    pairs = Pair.objects.bulk_create(
        Pair(
            image_id=caption.image_id,
            caption=caption,
            kind=PairKind.POSITIVE if index % per_image == 0 else PairKind.RANDOM_NEGATIVE,
        )
        for index, caption in enumerate(captions)
    )
    return [pairs[i : i + per_image] for i in range(0, len(pairs), per_image)]


def _setup(*, manager, rng: random.Random, number: int):
    k = rng.choice((1, 2, 3))
    project = factories.project(
        manager=manager,
        name=f"States {number}",
        judgments_per_item=k,
        max_judgments_per_item=k + rng.choice((0, 0, 1, 2)),
        captions_per_image=1,
        gold_rate=rng.choice((0.0, 0.3)),
        challenge_rate=rng.choice((0.0, 0.5)),
        agreement_threshold=0.7,
    )
    crowd = [manager]
    for person in range(rng.choice((k, k + 1, k + 3))):
        user = factories.user(f"s{number}p{person}")
        factories.member(project=project, user=user, role="annotator")
        crowd.append(user)
    _pairs(project=project, images=rng.randint(2, 5), per_image=1, tag="v")
    tasks_open(project=project, seed=number)
    for image_pairs in _pairs(
        project=project, images=rng.randint(1, 2), per_image=1 + PROPOSALS, tag="c"
    ):
        task = Task.objects.create(
            project=project,
            kind=TaskKind.CHALLENGE,
            image_id=image_pairs[0].image_id,
            pair=image_pairs[0],
            target=k,
            random_key=rng.randrange(RANDOM_KEY_MAX),
        )
        ChallengeOption.objects.bulk_create(
            ChallengeOption(task=task, pair=pair, position=position, is_check=position == 0)
            for position, pair in enumerate(image_pairs)
        )
    return project, crowd


def _answer(*, project, user, rng: random.Random) -> bool:
    lease = assignment_get(project=project, annotator=user, lookahead=0).current
    if lease is None:
        return False
    task = lease.task
    if task.is_gold:
        judgment_submit(lease=lease, answer=rng.choice(("match", "no_match", "unsure")))
    elif task.kind == TaskKind.CHALLENGE:
        options = list(task.options.all())
        marked = [o.pk for o in options if rng.random() < (0.9 if o.is_check else 0.5)]
        judgment_submit(lease=lease, answer="challenge", marked=marked)
    else:
        judgment_submit(
            lease=lease, answer=rng.choices(("match", "no_match", "unsure"), (4, 4, 2))[0]
        )
    return True


def _judged_items(project) -> set[int]:
    """Pairs under verification with any judgment: verification answers (gold items aside) and
    marks on challenge proposals."""
    verified = Judgment.objects.filter(
        task__project=project, task__kind=TaskKind.VERIFY, task__is_gold=False
    ).values_list("task__pair_id", flat=True)
    marked = ChallengeMark.objects.filter(
        judgment__task__project=project, option__is_check=False
    ).values_list("option__pair_id", flat=True)
    return set(verified) | set(marked)


def _states(project) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for state in ItemState.values:
        for pair_id in items_in_state(project=project, state=state).values_list(
            "pair_id", flat=True
        ):
            found.setdefault(pair_id, []).append(state)
    return found


def _check(project, client, *, settled: bool, where: str) -> None:
    judged = _judged_items(project)
    states = _states(project)
    assert set(states) == set(
        ItemLabel.objects.filter(project=project).values_list("pair", flat=True)
    )
    for pair_id in judged:
        assert len(states.get(pair_id, [])) == 1, (where, pair_id, states.get(pair_id))
    counts = item_state_counts(project=project)
    assert sum(counts.values()) == len(states), where
    for state in ItemState.values:
        listed = {
            view.item.pair_id for view in items_listed(project=project, state=state, limit=500)
        }
        assert listed == {p for p, s in states.items() if s == [state]}, (where, state)
        for view in items_listed(project=project, state=state, limit=500):
            assert view.reason, (where, state)
    if settled:
        stuck = {
            pair_id: states[pair_id][0]
            for pair_id in judged
            if states[pair_id][0] in (ItemState.PENDING, ItemState.DISPUTED)
        }
        assert not stuck, (where, stuck)
        # And the page a manager opens shows every item they must decide.
        url = reverse("agreement-disputed", kwargs={"slug": project.slug})
        html = client.get(url).content.decode()
        shown = {int(p) for p in re.findall(r'data-pair="(\d+)"', html)}
        waiting = {p for p in judged if states[p] == [ItemState.WAITING]}
        assert waiting <= shown, where
        for state in ItemState.values:
            html = client.get(url, {"state": state}).content.decode()
            shown = {int(p) for p in re.findall(r'data-pair="(\d+)"', html)}
            assert {p for p in judged if states[p] == [state]} <= shown, (where, state)


def _recompute(project, client, *, settled=False, where=""):
    project.refresh_from_db()
    result = consensus_recompute(project=project)
    _check(project, client, settled=settled, where=where)
    snapshot = result.snapshot
    parts = (
        snapshot.items_pending
        + snapshot.items_agreed
        + snapshot.items_disputed
        + snapshot.items_waiting
        + snapshot.items_adjudicated
    )
    # Items nobody answered are in the total alone: they have no item row and no state.
    assert parts <= snapshot.items_total, where
    judged = _judged_items(project)
    unjudged_rows = (
        ItemLabel.objects.filter(project=project, adjudicated_label__isnull=True)
        .filter(sent_to_manager=False)
        .exclude(pair__in=judged)
        .exclude(pair__tasks__is_gold=True)
    )
    assert not unjudged_rows.exists(), (where, list(unjudged_rows.values_list("pair", flat=True)))
    return result


def _drain(project, crowd, client, rng, where):
    """Everyone answers all they may; recompute; until a recompute asks for nothing more."""
    for _ in range(30):
        answered = True
        while answered:
            answered = False
            for user in crowd:
                answered |= _answer(project=project, user=user, rng=rng)
        if _recompute(project, client, where=where).reopened == 0:
            break
    _check(project, client, settled=True, where=where)


@pytest.mark.parametrize("chunk", range(4))
def test_every_judged_item_is_in_one_state_and_listed_for_it(client, manager, chunk):
    client.force_login(manager)
    for number in range(chunk * SEQUENCES // 4, (chunk + 1) * SEQUENCES // 4):
        rng = random.Random(number)
        project, crowd = _setup(manager=manager, rng=rng, number=number)
        for step in range(rng.randint(10, 40)):
            where = f"sequence {number} step {step}"
            action = rng.choices(
                (
                    "answer",
                    "recompute",
                    "suspend",
                    "reinstate",
                    "limit",
                    "gold",
                    "decide",
                    "skip",
                    "undo",
                ),
                (12, 4, 1, 1, 1, 1, 1, 1, 1),
            )[0]
            if action == "answer":
                _answer(project=project, user=rng.choice(crowd), rng=rng)
            elif action == "skip":
                user = rng.choice(crowd)
                lease = assignment_get(project=project, annotator=user, lookahead=0).current
                if lease is not None:
                    lease_skip(lease=lease)
            elif action == "undo":
                # Refused when there is nothing recent to undo, or its caption is under review.
                with contextlib.suppress(SubmitRefused):
                    judgment_undo(project=project, annotator=rng.choice(crowd))
            elif action == "recompute":
                _recompute(project, client, where=where)
            elif action == "suspend" and len(crowd) > 1:
                user = rng.choice(crowd[1:])
                if not Suspension.objects.filter(
                    project=project, annotator=user, lifted_at__isnull=True
                ).exists():
                    annotator_suspend(project=project, annotator=user, by=manager)
                    # The recompute it asked a worker for (not run in the request).
                    _recompute(project, client, where=where)
            elif action == "reinstate":
                held = Suspension.objects.filter(project=project, lifted_at__isnull=True).first()
                if held is not None:
                    annotator_reinstate(project=project, annotator=held.annotator, by=manager)
                    _recompute(project, client, where=where)
            elif action == "limit":
                Project.objects.filter(pk=project.pk).update(
                    max_judgments_per_item=project.max_judgments_per_item + 1
                )
                project.refresh_from_db()
            elif action == "gold":
                judged = list(_judged_items(project))
                if judged:
                    pair = Pair.objects.get(pk=rng.choice(sorted(judged)))
                    gold_set(pair=pair, answer=rng.choice(("match", "no_match")))
            elif action == "decide":
                undecided = sorted(
                    set(_judged_items(project))
                    & set(
                        ItemLabel.objects.filter(
                            project=project, adjudicated_label__isnull=True
                        ).values_list("pair_id", flat=True)
                    )
                )
                if undecided:
                    pair_id = rng.choice(undecided)
                    response = client.post(
                        reverse(
                            "agreement-adjudicate",
                            kwargs={"slug": project.slug, "pair_id": pair_id},
                        ),
                        {"label": rng.choice(("0", "1"))},
                    )
                    assert response.status_code == 302, where
                    assert ItemLabel.objects.get(pair_id=pair_id).adjudicated_label is not None
        _recompute(project, client, where=f"sequence {number} end")
        _drain(project, crowd, client, rng, where=f"sequence {number} drained")


def test_equal_target_and_limit_with_an_unsure_answer_waits_for_a_manager(client, manager):
    """The issue's case: 3 judgments per item and at most 3; match, no match, unsure."""
    project = factories.project(
        manager=manager,
        name="Three",
        judgments_per_item=3,
        max_judgments_per_item=3,
        captions_per_image=1,
        gold_rate=0.0,
    )
    crowd = [factories.user(f"t{i}") for i in range(3)]
    for user in crowd:
        factories.member(project=project, user=user, role="annotator")
    [[pair]] = _pairs(project=project, images=1, per_image=1, tag="t")
    tasks_open(project=project)
    for user, answer in zip(crowd, ("match", "no_match", "unsure"), strict=True):
        lease = assignment_get(project=project, annotator=user, lookahead=0).current
        judgment_submit(lease=lease, answer=answer)
    snapshot = consensus_recompute(project=project).snapshot
    assert (snapshot.items_pending, snapshot.items_waiting) == (0, 1)
    assert [i.pair_id for i in items_in_state(project=project, state="waiting")] == [pair.pk]
    client.force_login(manager)
    html = client.get(reverse("agreement-disputed", kwargs={"slug": project.slug})).content
    assert f'data-pair="{pair.pk}"'.encode() in html and b"No disputed items" not in html
    assert b"waiting for you" in html


def test_a_pair_judged_only_in_challenges_is_listed_with_its_marks_and_can_be_decided(
    client, manager
):
    project = factories.project(
        manager=manager,
        name="Challenged",
        judgments_per_item=2,
        max_judgments_per_item=2,
        gold_rate=0.0,
        challenge_rate=1.0,
    )
    crowd = [factories.user(f"c{i}") for i in range(2)]
    for user in crowd:
        factories.member(project=project, user=user, role="annotator")
    [[check, proposal]] = _pairs(project=project, images=1, per_image=2, tag="x")
    task = Task.objects.create(
        project=project,
        kind=TaskKind.CHALLENGE,
        image_id=check.image_id,
        pair=check,
        target=2,
        random_key=1,
    )
    first, second = ChallengeOption.objects.bulk_create(
        [
            ChallengeOption(task=task, pair=check, position=0, is_check=True),
            ChallengeOption(task=task, pair=proposal, position=1),
        ]
    )
    for user, marked in zip(crowd, ([first.pk, second.pk], [first.pk]), strict=True):
        lease = assignment_get(project=project, annotator=user, lookahead=0).current
        assert lease.task_id == task.pk
        judgment_submit(lease=lease, answer="challenge", marked=marked)
    consensus_recompute(project=project)
    item = ItemLabel.objects.get(pair=proposal)
    assert (item.status, item.needs_manager) == ("disputed", True)
    client.force_login(manager)
    url = reverse("agreement-disputed", kwargs={"slug": project.slug})
    html = client.get(url).content.decode()
    assert f'data-pair="{proposal.pk}"' in html
    assert "Match (marked)" in html and "No match (not marked)" in html
    assert html.count("in a challenge item") == 2
    decide = reverse("agreement-adjudicate", kwargs={"slug": project.slug, "pair_id": proposal.pk})
    response = client.post(decide, {"label": "0"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.adjudicated_label == 0 and Pair.objects.get(pk=proposal.pk).label == 0
    # Deciding one caption leaves the challenge's task as it was for its other captions.
    task.refresh_from_db()
    assert task.target == 2
    consensus_recompute(project=project)
    assert [i.pair_id for i in items_in_state(project=project, state="adjudicated")] == [
        proposal.pk
    ]
    # A pair that is no item at all is refused with a message, not a 500.
    [[stray]] = _pairs(project=project, images=1, per_image=1, tag="y")
    stray_url = reverse("agreement-adjudicate", kwargs={"slug": project.slug, "pair_id": stray.pk})
    assert client.post(stray_url, {"label": "1"}).status_code == 302
    with pytest.raises(ValueError):
        item_adjudicate(project=project, pair=stray, label=1, by=manager)


def test_items_nobody_is_left_to_judge_wait_for_a_manager(client, manager):
    """An item still asking for a judgment that no member may give (everyone allowed has had
    it) waits for a manager; more than one chunk of tasks (500) is read."""
    from datasets.models import Membership

    project = factories.project(
        manager=manager,
        name="Few",
        judgments_per_item=2,
        max_judgments_per_item=3,
        captions_per_image=1,
        gold_rate=0.0,
    )
    worker = factories.user("only")
    factories.member(project=project, user=worker, role="annotator")
    _pairs(project=project, images=520, per_image=1, tag="f")
    tasks_open(project=project)
    while lease := assignment_get(project=project, annotator=worker, lookahead=0).current:
        judgment_submit(lease=lease, answer="match")
    snapshot = consensus_recompute(project=project).snapshot
    assert (snapshot.items_pending, snapshot.items_waiting) == (520, 0)  # the manager may judge
    Membership.objects.filter(project=project, user=manager).delete()
    snapshot = consensus_recompute(project=project).snapshot
    assert (snapshot.items_pending, snapshot.items_waiting) == (0, 520)
    views = items_listed(project=project, state=ItemState.WAITING, limit=1)
    assert "no annotator is left" in views[0].reason
