"""Aggregation written back, disputes, adjudication, suspension and the crowd simulator, through
the real queue and services."""

import io
import re

import pytest
from django.core.management import call_command

from annotate.agreement.services.consensus import (
    consensus_recompute,
    item_adjudicate,
    task_target_raise,
)
from annotate.agreement.services.suspensions import annotator_reinstate, annotator_suspend
from annotate.models import AnnotatorFlag, ItemLabel, Judgment, Suspension, Task
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from datasets.ingest.services.uploads import caption_create
from datasets.models import Pair, Project
from tests import factories

pytestmark = pytest.mark.django_db


def _crowd(project, count, prefix="a"):
    users = []
    for number in range(count):
        user = factories.user(f"{prefix}{number}")
        factories.member(project=project, user=user, role="annotator")
        users.append(user)
    return users


def _answer(project, user, answer, task=None):
    lease = assignment_get(project=project, annotator=user, lookahead=0).current
    assert lease is not None
    if task is not None:
        assert lease.task_id == task.pk
    return judgment_submit(lease=lease, answer=answer).judgment


def _captioned_images(project, count):
    for seed in range(count):
        caption_create(
            image=factories.image(project=project, seed=seed),
            text=f"a scene numbered {seed}",
            source="api",
        )


def test_simulate_crowd_dawid_skene_beats_majority_vote(manager):
    project = factories.project(manager=manager, name="Crowd", captions_per_image=1, gold_rate=0.0)
    # 100 images: 100 true captions and 100 random negatives. Seeds 1, 2, 3, 5 and 11 gave
    # Dawid–Skene 0.99/0.97/0.99/0.99/0.99 against majority vote 0.95/0.905/0.97/0.92/0.935.
    _captioned_images(project, 100)
    out = io.StringIO()
    call_command(
        "simulate_crowd",
        project.slug,
        "--annotators",
        "20",
        "--spammers",
        "0.3",
        "--seed",
        "1",
        "--judgments-per-item",
        "5",
        stdout=out,
    )
    text = out.getvalue()
    print(text)
    mv = float(re.search(r"Majority vote accuracy: ([\d.]+)", text).group(1))
    ds = float(re.search(r"Dawid-Skene accuracy: +([\d.]+)", text).group(1))
    assert Pair.objects.filter(image__project=project).count() == 200
    assert ds > mv and ds >= 0.97


def _work_through(project, users, answer_for):
    """Each user answers every task the queue gives them with answer_for(user, task)."""
    for user in users:
        while True:
            lease = assignment_get(project=project, annotator=user, lookahead=0).current
            if lease is None:
                break
            judgment_submit(lease=lease, answer=answer_for(user, lease.task))


def test_recompute_writes_labels_status_and_a_snapshot(project):
    tasks = factories.verify_tasks(project=project, count=4, target=3)
    users = _crowd(project, 3)
    matching = {tasks[0].pk, tasks[1].pk}
    _work_through(project, users, lambda user, task: "match" if task.pk in matching else "no_match")
    result = consensus_recompute(project=project)
    labels = {item.pair_id: item for item in ItemLabel.objects.filter(project=project)}
    assert len(labels) == 4 and result.reopened == 0
    for task in tasks:
        item = labels[task.pair_id]
        expected = 1 if task.pk in matching else 0
        assert (item.label, item.mv_label, item.judgments, item.status) == (
            expected,
            expected,
            3,
            "agreed",
        )
        assert item.confidence >= project.agreement_threshold and item.mv_share == 1.0
        pair = Pair.objects.get(pk=task.pair_id)
        assert (pair.label, pair.confidence) == (expected, item.confidence)
    snapshot = result.snapshot
    assert (snapshot.judgments, snapshot.items_total, snapshot.items_agreed) == (12, 4, 4)
    assert snapshot.alpha == 1.0 and snapshot.percent_agreement == 1.0
    assert (snapshot.labels_match, snapshot.labels_no_match) == (2, 2)
    assert {row["name"] for row in snapshot.annotator_rows} == {"a0", "a1", "a2"}
    # Run twice, same figures.
    again = consensus_recompute(project=project).snapshot
    assert (again.alpha, again.items_agreed, again.annotator_rows) == (
        snapshot.alpha,
        snapshot.items_agreed,
        snapshot.annotator_rows,
    )


def test_unsure_answers_are_not_votes(project):
    [task] = factories.verify_tasks(project=project, count=1, target=2)
    users = _crowd(project, 2)
    _work_through(project, users[:1], lambda user, task: "match")
    _work_through(project, users[1:], lambda user, task: "unsure")
    result = consensus_recompute(project=project)
    item = ItemLabel.objects.get(pair_id=task.pair_id)
    assert (item.judgments, item.status) == (1, "pending")
    # Both slots are used, so the item asks for one more judgment.
    assert result.reopened == 1
    task.refresh_from_db()
    assert (task.target, task.is_open) == (3, True)


def test_a_disputed_item_gets_one_more_judgment_at_a_time_then_goes_to_the_manager(
    project, manager
):
    Project.objects.filter(pk=project.pk).update(max_judgments_per_item=4)
    [task] = factories.verify_tasks(project=project, count=1, target=2)
    users = _crowd(project, 5)
    _answer(project, users[0], "match", task)
    _answer(project, users[1], "no_match", task)

    first = consensus_recompute(project=project)
    item = ItemLabel.objects.get(pair_id=task.pair_id)
    task.refresh_from_db()
    assert (item.status, item.needs_manager, first.reopened) == ("disputed", False, 1)
    assert (task.target, task.is_open) == (3, True)
    # Nothing new came in: no second extra slot while the first is unused.
    assert consensus_recompute(project=project).reopened == 0
    task.refresh_from_db()
    assert task.target == 3

    _answer(project, users[2], "match", task)  # 2 to 1: a 67% majority is below 70%
    assert consensus_recompute(project=project).reopened == 1
    task.refresh_from_db()
    assert task.target == 4
    _answer(project, users[3], "no_match", task)  # 2 to 2 at the maximum of 4
    last = consensus_recompute(project=project)
    item.refresh_from_db()
    task.refresh_from_db()
    assert (last.reopened, task.target, task.is_open) == (0, 4, False)
    assert (item.status, item.needs_manager, item.judgments) == ("disputed", True, 4)
    assert last.snapshot.items_waiting == 1
    assert assignment_get(project=project, annotator=users[4], lookahead=0).current is None
    assert Pair.objects.get(pk=task.pair_id).label is None

    item_adjudicate(project=project, pair=task.pair, label=0, by=manager, make_gold=True)
    after = consensus_recompute(project=project)
    item.refresh_from_db()
    task.refresh_from_db()
    pair = Pair.objects.get(pk=task.pair_id)
    assert (item.adjudicated_label, item.adjudicated_by, item.needs_manager) == (0, manager, False)
    assert (pair.label, pair.confidence) == (0, 1.0)
    assert (task.is_gold, task.gold_answer) == (True, "no_match")
    assert after.snapshot.items_adjudicated == 0  # gold items leave the item figures
    assert after.snapshot.items_waiting == 0


@pytest.mark.parametrize("redundancy", [1, 3])
def test_a_task_with_a_lease_out_is_never_asked_for_more(project, redundancy):
    """Issue 18: with a lease out, the item has no verdict yet (its answer may settle it), even
    though all its slots are taken; a recompute then must not open another slot."""
    [task] = factories.verify_tasks(project=project, count=1, target=redundancy)
    users = _crowd(project, redundancy + 1)
    for user in users[: redundancy - 1]:
        _answer(project, user, "match", task)
    held = assignment_get(project=project, annotator=users[redundancy - 1], lookahead=0).current
    assert held.task_id == task.pk
    result = consensus_recompute(project=project)
    task.refresh_from_db()
    assert (result.reopened, task.target, task.is_open) == (0, redundancy, False)
    # Not sent to a manager (with one judgment asked for and none in, it has no item row yet).
    assert not ItemLabel.objects.filter(pair_id=task.pair_id, needs_manager=True).exists()
    assert assignment_get(project=project, annotator=users[-1], lookahead=0).current is None

    judgment_submit(lease=held, answer="match")
    assert consensus_recompute(project=project).reopened == 0  # all in and agreed
    task.refresh_from_db()
    assert task.target == redundancy


def test_a_target_goes_up_only_on_the_judgments_the_verdict_was_drawn_from(project):
    """A recompute reads the judgments, then raises targets: an answer that came in between (or
    an undo and a new answer) makes its verdict stale, and the raise is refused."""
    [task] = factories.verify_tasks(project=project, count=1, target=2)
    users = _crowd(project, 3)
    first = _answer(project, users[0], "match", task)
    second = _answer(project, users[1], "no_match", task)
    assert task_target_raise(task_id=task.pk, seen_judgment_ids=[first.pk], limit=7) == 0
    assert task_target_raise(task_id=task.pk, seen_judgment_ids=[second.pk], limit=7) == 0
    task.refresh_from_db()
    assert task.target == 2
    seen = [first.pk, second.pk]
    assert task_target_raise(task_id=task.pk, seen_judgment_ids=seen, limit=7) == 1
    # A second recompute with the same verdict: the new slot is not filled yet.
    assert task_target_raise(task_id=task.pk, seen_judgment_ids=seen, limit=7) == 0
    task.refresh_from_db()
    assert (task.target, task.is_open) == (3, True)
    lease = assignment_get(project=project, annotator=users[2], lookahead=0).current
    assert lease.task_id == task.pk
    # While the new lease is out, nothing more, whatever was seen.
    assert task_target_raise(task_id=task.pk, seen_judgment_ids=seen, limit=7) == 0
    third = judgment_submit(lease=lease, answer="match").judgment
    all_in = [first.pk, second.pk, third.pk]
    assert set(Judgment.objects.filter(task=task).values_list("id", flat=True)) == set(all_in)
    assert task_target_raise(task_id=task.pk, seen_judgment_ids=all_in, limit=3) == 0  # limit
    task.refresh_from_db()
    assert task.target == 3


def test_a_recompute_rewrites_only_the_labels_that_changed(project):
    tasks = factories.verify_tasks(project=project, count=3, target=1)
    users = _crowd(project, 1)
    _answer(project, users[0], "match")
    consensus_recompute(project=project)
    stamps = dict(ItemLabel.objects.values_list("pair_id", "updated_at"))
    consensus_recompute(project=project)
    assert dict(ItemLabel.objects.values_list("pair_id", "updated_at")) == stamps
    answered = _answer(project, users[0], "no_match")
    consensus_recompute(project=project)
    after = dict(ItemLabel.objects.values_list("pair_id", "updated_at"))
    changed = {pair for pair, stamp in after.items() if stamp != stamps.get(pair)}
    assert changed == {answered.task.pair_id}
    # The third pair nobody answered: it stays unjudged, with no item row (QA finding 4).
    assert len(after) == len(tasks) - 1


def _figures(snapshot):
    return {
        field: getattr(snapshot, field)
        for field in (
            "judgments",
            "annotators",
            "alpha",
            "alpha_low",
            "alpha_high",
            "fleiss_kappa",
            "fleiss_items",
            "percent_agreement",
            "items_total",
            "items_pending",
            "items_agreed",
            "items_disputed",
            "items_waiting",
            "labels_match",
            "labels_no_match",
            "mv_ds_disagreements",
            "kappa_matrix",
            "annotator_rows",
        )
    }


def _labels(project):
    return sorted(
        ItemLabel.objects.filter(project=project).values_list(
            "pair_id",
            "label",
            "confidence",
            "mv_label",
            "mv_share",
            "judgments",
            "status",
            "pair__label",
            "pair__confidence",
        )
    )


def test_suspending_changes_the_figures_and_reinstating_restores_them_exactly(project, manager):
    tasks = factories.verify_tasks(project=project, count=8, target=4)
    users = _crowd(project, 4)
    truth = {task.pk: "match" if index % 2 else "no_match" for index, task in enumerate(tasks)}

    def answer(user, task):
        if user == users[3]:
            return "match"  # always the same answer
        if user == users[2] and task.pk == tasks[0].pk:
            return "match"  # one honest mistake
        return truth[task.pk]

    _work_through(project, users, answer)
    before = consensus_recompute(project=project).snapshot
    labels_before = _labels(project)
    flags_before = list(AnnotatorFlag.objects.values_list("annotator", "code", "reason"))

    annotator_suspend(project=project, annotator=users[3], by=manager, reason="spam")
    # The suspension asks a worker for the recompute; run here, it is this one.
    suspended = consensus_recompute(project=project)
    during = suspended.snapshot
    assert _figures(during) != _figures(before)
    assert during.judgments == before.judgments - 8 and during.annotators == 3
    assert during.alpha > before.alpha
    assert _labels(project) != labels_before
    assert [row["id"] for row in during.annotator_rows if row["id"] == users[3].pk]
    # Nothing deleted; the items lost a vote, so they ask for another.
    assert users[3].judgments.count() == 8 and suspended.reopened == 8

    annotator_reinstate(project=project, annotator=users[3], by=manager)
    after = consensus_recompute(project=project).snapshot
    assert _figures(after) == _figures(before)
    assert _labels(project) == labels_before
    assert list(AnnotatorFlag.objects.values_list("annotator", "code", "reason")) == flags_before
    suspension = Suspension.objects.get()
    assert (suspension.suspended_by, suspension.lifted_by, suspension.reason) == (
        manager,
        manager,
        "spam",
    )
    assert Task.objects.filter(project=project, target=5).count() == 8


def test_an_adjudication_stays_final_over_a_gold_answer_through_recomputes(project, manager):
    """A pair made gold (match) that a manager then decides "no match": the pair's label, the
    data browser and the release all follow the manager, recompute after recompute."""
    from annotate.queue.services.pool import gold_set

    tasks = factories.verify_tasks(project=project, count=2, target=2)
    users = _crowd(project, 2)
    _work_through(project, users, lambda user, task: "match")
    consensus_recompute(project=project)
    pair = Pair.objects.get(pk=tasks[0].pair_id)
    gold_set(pair=pair, answer="match")
    item_adjudicate(project=project, pair=pair, label=0, by=manager)
    for _ in range(2):
        consensus_recompute(project=project)
        pair.refresh_from_db()
        assert pair.label == 0


def test_a_request_for_adjudication_ends_when_the_pair_is_made_gold(project):
    """Sent to a manager, then made gold: decided by its answer, so it waits for nobody."""
    from annotate.queue.services.pool import gold_set

    tasks = factories.verify_tasks(project=project, count=2, target=2)
    users = _crowd(project, 2)
    _work_through(project, users, lambda user, task: "match")
    consensus_recompute(project=project)
    pair = Pair.objects.get(pk=tasks[0].pair_id)
    ItemLabel.objects.filter(pair=pair).update(sent_to_manager=True, needs_manager=True)
    consensus_recompute(project=project)
    assert ItemLabel.objects.get(pair=pair).needs_manager  # the request stands
    gold_set(pair=pair, answer="match")
    consensus_recompute(project=project)
    assert not ItemLabel.objects.get(pair=pair).needs_manager


def test_an_item_at_its_maximum_is_never_agreed_against_its_majority(project, manager):
    """Three annotators, three items at the most judgments they may get: one split 2–1 against
    the first annotator. The manager decides the other two, one in the first annotator's favour:
    Dawid–Skene, anchored on that one decision, comes to trust the first annotator and would call
    the split item "agreed" for them at 100 %. It must wait for the manager instead."""
    Project.objects.filter(pk=project.pk).update(max_judgments_per_item=3)
    project.refresh_from_db()
    tasks = factories.verify_tasks(project=project, count=3, target=3)
    first, second, third = _crowd(project, 3)
    split, decided, unsure = tasks
    votes = {
        split.pk: {first: "match", second: "no_match", third: "no_match"},
        decided.pk: {first: "match", second: "no_match", third: "unsure"},
        unsure.pk: {first: "unsure", second: "unsure", third: "unsure"},
    }
    _work_through(project, [first, second, third], lambda user, task: votes[task.pk][user])
    consensus_recompute(project=project)
    assert ItemLabel.objects.get(pair_id=split.pair_id).needs_manager
    item_adjudicate(project=project, pair=decided.pair, label=1, by=manager)
    item_adjudicate(project=project, pair=unsure.pair, label=0, by=manager, make_gold=True)
    consensus_recompute(project=project)
    item = ItemLabel.objects.get(pair_id=split.pair_id)
    assert item.mv_label == 0
    assert item.needs_manager and item.status != "agreed", (item.label, item.confidence)
