"""The queue's two promises under concurrency, on PostgreSQL and SQLite alike.

1. "Nothing to do" is said only when the annotator has no task they may take.
2. No task gets more than the project's redundancy (judgments per item) unless a recompute found
   its item unsettled (disputed, or short of votes after unsure answers) from all its judgments.

Each scenario runs annotators as threads with their own database connections over a small pool
(verification tasks, challenge items and gold at the project's rates), with consensus recomputes
firing in between from another thread, in rounds until a recompute asks for nothing more.

How a wrong "nothing to do" is recognised: in these runs a task's leases plus judgments never go
down (no skips, undos or expiry), so a task the annotator may take that is open after the call,
with the target it had before the call, was open for the whole call.

How a raise is checked: only recomputes change targets here, one at a time, so the tasks whose
target a recompute call raised are known, and so is the verdict it wrote for their items. Each
raised task must have had all its judgments in (as many as its old target, the lowest ids), and
the verdict must be unsettled and drawn from exactly those judgments' votes: a verdict read
before an answer came in, or while a lease was out, counts fewer votes.
"""

import random
import threading
import time
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count

from annotate.agreement.services.consensus import consensus_recompute
from annotate.models import (
    RANDOM_KEY_MAX,
    ChallengeOption,
    ItemLabel,
    ItemStatus,
    Judgment,
    Lease,
    LeaseState,
    Task,
    TaskKind,
)
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from annotate.queue.services.pool import gold_set, tasks_open
from datasets.models import Caption, Image, Pair, PairKind, Project, Source
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

PROPOSALS = 3


@dataclass(frozen=True)
class Scenario:
    judgments_per_item: int
    annotators: int
    verify: int  # verification tasks in the pool
    challenges: int
    gold: int  # of the verification pairs, made gold
    gold_rate: float
    challenge_rate: float
    seed: int

    def __str__(self) -> str:
        return (
            f"k{self.judgments_per_item}-a{self.annotators}-v{self.verify}-c{self.challenges}"
            f"-g{self.gold}"
        )


# Overlap 1 to 5; annotators enough for the most judgments an item may get (redundancy + 2), so
# every task can be finished; pools small enough that annotators keep meeting on the same rows.
SCENARIOS = [
    Scenario(1, 4, 10, 2, 2, 0.2, 0.2, seed=1),
    Scenario(1, 8, 6, 0, 0, 0.0, 0.0, seed=2),
    Scenario(2, 6, 8, 3, 2, 0.1, 0.3, seed=3),
    Scenario(3, 8, 8, 2, 2, 0.3, 0.1, seed=4),
    Scenario(4, 7, 6, 2, 1, 0.1, 0.2, seed=5),
    Scenario(5, 8, 5, 2, 1, 0.2, 0.2, seed=6),
]


@dataclass
class Plan:
    """What each annotator answers: most items the same for everyone, contested ones not
    (answers follow the annotator's number, some unsure), so that some get disputed."""

    truth: dict[int, str]  # verification task -> the answer everyone gives
    contested: set[int]  # tasks whose answers follow the annotator's number
    checks: dict[int, int]  # challenge task -> its check option
    options: dict[int, list[int]]  # challenge task -> its proposals' options

    def answer(self, *, task: Task, number: int) -> dict:
        if task.is_gold:
            return {"answer": task.gold_answer}
        if task.kind == TaskKind.CHALLENGE:
            marked = [self.checks[task.pk]]
            if task.pk in self.contested:
                marked += [
                    option
                    for position, option in enumerate(self.options[task.pk])
                    if (number + position) % 2
                ]
            return {"answer": "challenge", "marked": marked}
        if task.pk in self.contested:
            return {"answer": "unsure" if number % 5 == 4 else ("match", "no_match")[number % 2]}
        return {"answer": self.truth[task.pk]}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_no_false_nothing_to_do_and_no_judgment_nobody_needs(manager, scenario):
    rng = random.Random(scenario.seed)
    project = factories.project(
        manager=manager,
        name=f"Properties {scenario}",
        judgments_per_item=scenario.judgments_per_item,
        max_judgments_per_item=scenario.judgments_per_item + 2,
        captions_per_image=1,
        gold_rate=scenario.gold_rate,
        challenge_rate=scenario.challenge_rate,
    )
    plan = _pool(project=project, scenario=scenario, rng=rng)
    names = [f"p{number}" for number in range(scenario.annotators)]
    for name in names:
        factories.member(project=project, user=factories.user(name), role="annotator")

    false_empty: list[tuple[str, list[int]]] = []
    raises = Raises()
    errors: list[str] = []
    for _round in range(20):
        done = threading.Event()
        barrier = threading.Barrier(len(names) + 1)
        threads = [
            threading.Thread(
                target=_annotate,
                args=(project.pk, name, number, plan, barrier, false_empty, errors),
            )
            for number, name in enumerate(names)
        ] + [
            threading.Thread(
                target=_recompute_meanwhile,
                args=(project.pk, scenario.seed, barrier, done, raises, errors),
            )
        ]
        for thread in threads:
            thread.start()
        for thread in threads[:-1]:
            thread.join(timeout=120)
        done.set()
        threads[-1].join(timeout=120)
        assert not errors, errors
        # A raise may land after the last annotator stopped: then another round takes it.
        raises.recompute(project=project)
        if not Task.objects.filter(project=project, is_gold=False, is_open=True).exists():
            break
    else:
        pytest.fail("recomputes kept asking for more judgments")
    assert raises.calls > 1  # recomputes did race the annotators

    assert false_empty == []
    assert raises.violations == []
    tasks = list(Task.objects.filter(project=project, is_gold=False))
    judged = dict(
        Judgment.objects.filter(task__in=tasks).values_list("task").annotate(n=Count("id"))
    )
    assert not Lease.objects.filter(project=project, state=LeaseState.ACTIVE).exists()
    for task in tasks:
        # Every task was finished: nobody stopped while work was left.
        assert (task.judgment_count, task.lease_count) == (task.target, 0), task
        assert judged.get(task.pk, 0) == task.target
        # Every judgment beyond the redundancy came from a raise checked above.
        assert task.target - scenario.judgments_per_item == raises.raised.get(task.pk, 0), task
        assert task.target <= scenario.judgments_per_item + 2


class Raises:
    """Recomputes, one at a time, each followed by a check of the targets it raised."""

    def __init__(self) -> None:
        self.calls = 0
        self.raised: dict[int, int] = {}
        self.violations: list[tuple] = []

    def recompute(self, *, project: Project) -> int:
        before = _targets(project)
        reopened = consensus_recompute(project=project).reopened
        self.calls += 1
        after = _targets(project)
        raised = [pk for pk, target in after.items() if target > before[pk]]
        assert len(raised) == reopened
        for pk in raised:
            assert after[pk] == before[pk] + 1
            self.raised[pk] = self.raised.get(pk, 0) + 1
            problem = _raise_problem(task=Task.objects.get(pk=pk), old_target=before[pk])
            if problem:
                self.violations.append((pk, before[pk], problem))
        return reopened


def _targets(project: Project) -> dict[int, int]:
    return dict(Task.objects.filter(project=project, is_gold=False).values_list("pk", "target"))


def _raise_problem(*, task: Task, old_target: int) -> str | None:
    """Why raising the task's target from old_target was wrong, judged from the verdict the
    recompute wrote for its items; None when it was right."""
    first = list(Judgment.objects.filter(task=task).order_by("id")[:old_target])
    if len(first) < old_target:
        return f"only {len(first)} judgments in"
    if task.kind == TaskKind.CHALLENGE:
        # Every caption of an answered challenge is a vote, marked or not.
        pairs = list(task.options.filter(is_check=False).values_list("pair_id", flat=True))
        votes = {pair: old_target for pair in pairs}
    else:
        pairs = [task.pair_id]
        votes = {task.pair_id: sum(j.answer in ("match", "no_match") for j in first)}
    verdicts = {
        label.pair_id: (label.status, label.judgments)
        for label in ItemLabel.objects.filter(pair_id__in=pairs)
    }
    unsettled = [
        pair
        for pair in pairs
        if verdicts.get(pair, (None,))[0] in (ItemStatus.DISPUTED, ItemStatus.PENDING)
    ]
    if not unsettled:
        return f"settled: {verdicts}"
    stale = {pair: verdicts[pair] for pair in unsettled if verdicts[pair][1] != votes[pair]}
    if stale:
        return f"verdict from other votes than the {votes} in: {stale}"
    return None


def _open_to(*, project: Project, user) -> dict[int, int]:
    """Tasks the annotator may take now, with their targets."""
    return dict(
        Task.objects.filter(project=project, is_open=True, is_gold=False)
        .exclude(author=user)
        .exclude(leases__annotator=user)
        .values_list("pk", "target")
    )


def _annotate(project_id, name, number, plan, barrier, false_empty, errors):
    try:
        project = Project.objects.get(pk=project_id)
        user = get_user_model().objects.get(username=name)
        rng = random.Random(number)
        barrier.wait()
        while True:
            before = dict(
                Task.objects.filter(project=project, is_gold=False).values_list("pk", "target")
            )
            assignment = assignment_get(
                project=project, annotator=user, lookahead=rng.choice((0, 1)), rng=rng
            )
            lease = assignment.current
            if lease is None:
                missed = _open_to(project=project, user=user)
                steady = sorted(pk for pk, target in missed.items() if before.get(pk) == target)
                if steady:
                    false_empty.append((name, steady))
                break
            judgment_submit(lease=lease, **plan.answer(task=lease.task, number=number))
    except Exception as exc:  # surfaced by the test
        errors.append(f"{name}: {exc!r}")
    finally:
        connection.close()


def _recompute_meanwhile(project_id, seed, barrier, done, raises, errors):
    try:
        project = Project.objects.get(pk=project_id)
        rng = random.Random(seed)
        barrier.wait()
        # On SQLite a recompute holds the one write lock from start to end, so back to back
        # they would leave the annotators little time to work.
        pause = 0.02 if connection.vendor == "postgresql" else 0.15
        while not done.is_set():
            raises.recompute(project=project)
            time.sleep(rng.uniform(0, pause))
    except Exception as exc:
        errors.append(f"recompute: {exc!r}")
    finally:
        connection.close()


def _pool(*, project: Project, scenario: Scenario, rng: random.Random) -> Plan:
    """Verification tasks (through tasks_open), gold among them, then challenge items (a check
    and proposals, like the hard-negative stage bundles them) whose pairs get no other task."""
    verify_pairs = _pairs(project=project, images=scenario.verify, per_image=1, tag="v")
    tasks_open(project=project, seed=scenario.seed)
    verify = list(Task.objects.filter(project=project, kind=TaskKind.VERIFY).order_by("pk"))
    assert len(verify) == len(verify_pairs)
    for task in verify[: scenario.gold]:
        gold_set(pair=task.pair, answer=rng.choice(("match", "no_match")))
    regular = verify[scenario.gold :]

    challenge_pairs = _pairs(
        project=project, images=scenario.challenges, per_image=1 + PROPOSALS, tag="c"
    )
    checks: dict[int, int] = {}
    options: dict[int, list[int]] = {}
    for image_pairs in challenge_pairs:
        task = Task.objects.create(
            project=project,
            kind=TaskKind.CHALLENGE,
            image_id=image_pairs[0].image_id,
            pair=image_pairs[0],
            target=scenario.judgments_per_item,
            random_key=rng.randrange(RANDOM_KEY_MAX),
        )
        made = ChallengeOption.objects.bulk_create(
            ChallengeOption(task=task, pair=pair, position=position, is_check=position == 0)
            for position, pair in enumerate(image_pairs)
        )
        checks[task.pk] = made[0].pk
        options[task.pk] = [option.pk for option in made[1:]]

    work = regular + list(Task.objects.filter(project=project, kind=TaskKind.CHALLENGE))
    contested = {task.pk for task in rng.sample(work, k=max(1, len(work) // 3))}
    truth = {task.pk: rng.choice(("match", "no_match")) for task in regular}
    return Plan(truth=truth, contested=contested, checks=checks, options=options)


def _pairs(*, project: Project, images: int, per_image: int, tag: str) -> list[list[Pair]]:
    """Images with per_image captions each, and a pair for each caption (the first positive)."""
    made = Image.objects.bulk_create(
        Image(
            project=project,
            file=f"properties/{tag}{number}.jpg",
            sha256=f"{tag}{number}".ljust(64, "0"),
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
