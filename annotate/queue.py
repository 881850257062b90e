"""Handing out work: leases on tasks, renewed while the page is open, returned when skipped or expired.

The guarantees, on PostgreSQL and SQLite alike:
* a task never holds more leases plus judgments than its target;
* an annotator gets a task at most once (a unique constraint on leases);
* submitting the same lease twice makes one judgment.

Every change to a task's counters happens with the task row locked (``select_for_update``; on
SQLite the IMMEDIATE transaction mode serialises writers instead), and the database checks the
counters against the target. Candidates are found with ``SKIP LOCKED`` so annotators asking at the
same moment walk past each other's rows instead of queueing behind them.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import OperationalError, connection, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from annotate.models import Lease, LeaseState, Task, TaskKind
from datasets.models import Project

P = ParamSpec("P")
R = TypeVar("R")
_RANDOM_KEY_MAX = 2**31 - 1
# PostgreSQL's deadlock and serialisation failures: the transaction did nothing and may be retried.
_TRANSIENT_SQLSTATES = {"40P01", "40001"}
_ATTEMPTS = 3


def retry_transient(function: Callable[P, R]) -> Callable[P, R]:
    """Run a self-contained transaction again when the database aborted it as a deadlock victim."""

    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return function(*args, **kwargs)
            except OperationalError as exc:
                transient = getattr(exc.__cause__, "sqlstate", None) in _TRANSIENT_SQLSTATES
                if not transient or attempt == _ATTEMPTS or connection.in_atomic_block:
                    raise
        raise AssertionError("unreachable")

    return wrapper


@dataclass(frozen=True)
class Assignment:
    current: Lease | None
    upcoming: list[Lease]


def choose_pool(*, draw: float, gold_rate: float, challenge_rate: float = 0.0) -> str:
    """Which pool the next hand-out comes from, given a uniform draw in [0, 1)."""
    if draw < gold_rate:
        return "gold"
    if draw < gold_rate + challenge_rate:
        return "challenge"
    return "work"


@retry_transient
def assignment_get(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    now: datetime | None = None,
    lookahead: int | None = None,
    rng: random.Random | None = None,
) -> Assignment:
    """The task on the annotator's screen, plus the ones leased ahead for preloading.

    Returns the leases the annotator already holds (a reload shows the same task), takes new ones
    up to the lookahead (the setting by default; API clients, which preload nothing, pass 0), and
    renews them all. ``rng`` makes the choice of tasks reproducible (the crowd simulator).
    """
    if now is None and _reclaim_due(project.pk):
        leases_reclaim(project=project, limit=20)
    now = now or timezone.now()
    lookahead = settings.CONCORD_LOOKAHEAD if lookahead is None else lookahead
    with transaction.atomic():
        existing = list(_active_leases(project=project, annotator=annotator))
        held = list(existing)
        rng = rng or random.Random()
        while len(held) < 1 + lookahead:
            lease = _lease_new(
                project=project, annotator=annotator, now=now, rng=rng, shown=not held
            )
            if lease is None:
                break
            held.append(lease)
        if not held:
            return Assignment(current=None, upcoming=[])
        current = held[0]
        # Leases taken in this call already carry their expiry (and the first its shown_at); the
        # ones held from before are renewed. One UPDATE per lease row: a second update of a row
        # in the same transaction makes PostgreSQL re-check its foreign key at commit, taking a
        # share lock on a task row another annotator may hold, which can deadlock.
        if existing:
            expires = now + timedelta(seconds=settings.CONCORD_LEASE_SECONDS)
            Lease.objects.filter(pk__in=[lease.pk for lease in existing[1:]]).update(
                expires_at=expires
            )
            current.shown_at = current.shown_at or now
            Lease.objects.filter(pk=current.pk).update(
                expires_at=expires, shown_at=current.shown_at
            )
    return Assignment(current=_with_relations(current), upcoming=held[1:])


_RECLAIM_EVERY_SECONDS = 5.0
_last_reclaim: dict[int, float] = {}


def _reclaim_due(project_id: int) -> bool:
    """Whether this process should sweep the project's expired leases now: at most every few
    seconds, since beat sweeps every minute anyway and the sweep is one query per hand-out."""
    clock = time.monotonic()
    if clock - _last_reclaim.get(project_id, float("-inf")) < _RECLAIM_EVERY_SECONDS:
        return False
    _last_reclaim[project_id] = clock
    return True


def leases_heartbeat(
    *, project: Project, annotator: AbstractBaseUser, now: datetime | None = None
) -> int:
    """Keep the annotator's leases alive while their page is open; returns how many were renewed."""
    now = now or timezone.now()
    return Lease.objects.filter(
        project=project, annotator=annotator, state=LeaseState.ACTIVE
    ).update(expires_at=now + timedelta(seconds=settings.CONCORD_LEASE_SECONDS))


def lease_skip(*, lease: Lease) -> None:
    """Give the task back to the pool (for others: this annotator never gets it again)."""
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=lease.task_id)
        lease = Lease.objects.select_for_update().get(pk=lease.pk)
        if lease.state != LeaseState.ACTIVE:
            return
        _release_slot(task=task, lease=lease)
        lease.state = LeaseState.SKIPPED
        lease.save(update_fields=["state", "holds_slot"])


def leases_reclaim(
    *, project: Project | None = None, now: datetime | None = None, limit: int = 500
) -> int:
    """Return the slots of expired leases to the pool; safe to run from many places at once."""
    now = now or timezone.now()
    expired = Lease.objects.filter(state=LeaseState.ACTIVE, holds_slot=True, expires_at__lt=now)
    if project is not None:
        expired = expired.filter(project=project)
    reclaimed = 0
    for lease_id, task_id in expired.values_list("pk", "task_id")[:limit]:
        with transaction.atomic():
            task = Task.objects.select_for_update().get(pk=task_id)
            lease = Lease.objects.select_for_update().get(pk=lease_id)
            # Re-checked under the lock: a heartbeat or a submit may have won the race.
            if lease.state != LeaseState.ACTIVE or lease.expires_at >= now:
                continue
            _release_slot(task=task, lease=lease)
            lease.state = LeaseState.EXPIRED
            lease.save(update_fields=["state", "holds_slot"])
            reclaimed += 1
    return reclaimed


def take_slot(*, task: Task) -> None:
    """Count one more lease against a locked task; the database refuses it if the task is full."""
    task.lease_count += 1
    task.priority = 1
    refresh_open(task)
    task.save(update_fields=["lease_count", "priority", "is_open"])


def _release_slot(*, task: Task, lease: Lease) -> None:
    if lease.holds_slot:
        task.lease_count -= 1
        refresh_open(task)
        task.save(update_fields=["lease_count", "is_open"])
    lease.holds_slot = False


def refresh_open(task: Task) -> None:
    task.is_open = task.is_gold or task.judgment_count + task.lease_count < task.target


def _active_leases(*, project: Project, annotator: AbstractBaseUser) -> QuerySet[Lease]:
    return Lease.objects.filter(
        project=project, annotator=annotator, state=LeaseState.ACTIVE
    ).order_by("id")


def _with_relations(lease: Lease) -> Lease:
    return Lease.objects.select_related(
        "project", "task", "task__image", "task__pair", "task__pair__caption"
    ).get(pk=lease.pk)


def _lease_new(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    now: datetime,
    rng: random.Random,
    shown: bool,
) -> Lease | None:
    expires = now + timedelta(seconds=settings.CONCORD_LEASE_SECONDS)
    shown_at = now if shown else None
    task = None
    pool = choose_pool(
        draw=rng.random(), gold_rate=project.gold_rate, challenge_rate=project.challenge_rate
    )
    if pool == "gold":
        gold = _gold_candidate(project=project, annotator=annotator, rng=rng)
        if gold is not None and _work_exists(project=project, annotator=annotator):
            task = gold
    if task is None:
        # Each walk falls back on the other, so that nobody waits while either has work.
        walks = (True, False) if pool == "challenge" else (False, True)
        start = rng.randrange(_RANDOM_KEY_MAX)
        for challenge in walks:
            task = _work_candidate(
                project=project, annotator=annotator, start=start, challenge=challenge
            )
            if task is not None:
                break
        if task is None:
            return None
        take_slot(task=task)
    return Lease.objects.create(
        task=task,
        project=project,
        annotator=annotator,
        expires_at=expires,
        shown_at=shown_at,
        # Gold has no target: every annotator answers it, so it takes no slot.
        holds_slot=not task.is_gold,
    )


def _leased_by(annotator: AbstractBaseUser) -> Exists:
    return Exists(Lease.objects.filter(task=OuterRef("pk"), annotator=annotator))


def _work_pool(
    *, project: Project, annotator: AbstractBaseUser, challenge: bool = False
) -> QuerySet[Task]:
    """Open non-gold tasks the annotator may take; challenge items and the rest are separate
    walks (each has its own partial index)."""
    tasks = Task.objects.filter(project=project, is_open=True, is_gold=False)
    if challenge:
        tasks = tasks.filter(kind=TaskKind.CHALLENGE)
    else:
        tasks = tasks.exclude(kind=TaskKind.CHALLENGE)
    return tasks.exclude(author=annotator).exclude(_leased_by(annotator))


def _work_exists(*, project: Project, annotator: AbstractBaseUser) -> bool:
    return any(
        _work_pool(project=project, annotator=annotator, challenge=challenge).exists()
        for challenge in (False, True)
    )


def _work_candidate(
    *, project: Project, annotator: AbstractBaseUser, start: int, challenge: bool = False
) -> Task | None:
    """Started tasks first (to finish items), then unstarted ones from a random point onwards.

    Each annotator starts the unstarted walk at a different random key, so concurrent annotators
    rarely race for the same row; SKIP LOCKED passes over rows another transaction holds.
    """
    pool = _work_pool(project=project, annotator=annotator, challenge=challenge)
    pool = pool.order_by("random_key")
    # Three simple range walks rather than one OR: each follows the queue index directly.
    for candidates in (
        pool.filter(priority=1),
        pool.filter(priority=0, random_key__gte=start),
        pool.filter(priority=0, random_key__lt=start),
    ):
        task = candidates.select_for_update(skip_locked=True, of=("self",)).first()
        if task is not None:
            return task
    return None


def _gold_candidate(
    *, project: Project, annotator: AbstractBaseUser, rng: random.Random
) -> Task | None:
    pool = Task.objects.filter(project=project, is_gold=True).exclude(_leased_by(annotator))
    start = rng.randrange(_RANDOM_KEY_MAX)
    return (
        pool.filter(random_key__gte=start).order_by("random_key").first()
        or pool.filter(random_key__lt=start).order_by("random_key").first()
    )
