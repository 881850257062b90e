"""Handing out work: leases on tasks, renewed while the page is open, returned when skipped or expired.

The guarantees, on PostgreSQL and SQLite alike:
* a task never holds more leases plus judgments than its target;
* an annotator gets a task at most once (a unique constraint on leases);
* submitting the same lease twice makes one judgment.

Every change to a task's counters happens with the task row locked (``select_for_update``; on
SQLite the IMMEDIATE transaction mode serialises writers instead), and the database checks the
counters against the target. Candidates are found with ``SKIP LOCKED`` so annotators asking at the
same moment walk past each other's rows instead of queueing behind them. On PostgreSQL a hand-out
is one statement (walk, lock, count, lease), since round trips are most of a request's cost.

"Nothing to do" is said only when the annotator has no task they may take: on PostgreSQL, when
the SKIP LOCKED walks find nothing, a walk that waits for rows others hold decides; on SQLite the
walks run inside the one write transaction, so what they see is already the whole truth.
"""

import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Case, Exists, F, Model, OuterRef, QuerySet, Value, When
from django.utils import timezone

from annotate.models import (
    RANDOM_KEY_MAX,
    ChallengeMark,
    Lease,
    LeaseState,
    Suspension,
    Task,
    TaskKind,
)
from datasets.models import Caption, Image, Pair, Project

P = ParamSpec("P")
R = TypeVar("R")
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

    Each hand-out is a transaction of its own (on PostgreSQL a single statement), so a request
    that finds its work costs a few round trips and one commit.
    """
    if now is None and _reclaim_due(project.pk):
        leases_reclaim(project=project, limit=20)
    now = now or timezone.now()
    lookahead = settings.CONCORD_LOOKAHEAD if lookahead is None else lookahead
    rng = rng or random.Random()
    # The task (for its image id) comes along: the page preloads the upcoming leases' images.
    existing = list(_active_leases(project=project, annotator=annotator).select_related("task"))
    held = list(existing)
    while len(held) < 1 + lookahead:
        lease = _lease_new(project=project, annotator=annotator, now=now, rng=rng, shown=not held)
        if lease is None:
            break
        held.append(lease)
    if not held:
        # Another session of the same annotator (a second tab, a script) may have taken the
        # last task they may have while this one looked: show them that lease, not "nothing".
        existing = list(_active_leases(project=project, annotator=annotator).select_related("task"))
        held = list(existing)
    if not held:
        return Assignment(current=None, upcoming=[])
    current = held[0]
    if existing:
        # Leases taken in this call already carry their expiry (and the first its shown_at); the
        # ones held from before are renewed, in one UPDATE.
        Lease.objects.filter(pk__in=[lease.pk for lease in existing]).update(
            expires_at=now + timedelta(seconds=settings.CONCORD_LEASE_SECONDS),
            shown_at=Case(
                When(pk=current.pk, shown_at__isnull=True, then=Value(now)),
                default=F("shown_at"),
            ),
        )
        # A new lease comes with its task, image, pair and caption; a held one is read again.
        current = _with_relations(current)
    current.project = project
    return Assignment(current=current, upcoming=held[1:])


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


def lease_skip(*, lease: Lease) -> str:
    """Give the task back to the pool (for others: this annotator never gets it again).

    Returns the lease's state afterwards: ``skipped``, or as it was when it is no longer active
    (``submitted``: the answer stands and nothing is skipped; ``expired``)."""
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=lease.task_id)
        lease = Lease.objects.select_for_update().get(pk=lease.pk)
        if lease.state != LeaseState.ACTIVE:
            return lease.state
        _release_slot(task=task, lease=lease)
        lease.state = LeaseState.SKIPPED
        lease.save(update_fields=["state", "holds_slot"])
        return lease.state


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
    return Lease.objects.select_related("task__image", "task__pair__caption").get(pk=lease.pk)


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
    pool = choose_pool(
        draw=rng.random(), gold_rate=project.gold_rate, challenge_rate=project.challenge_rate
    )
    if pool == "gold":
        gold = _gold_candidate(project=project, annotator=annotator, rng=rng)
        if gold is not None and _work_exists(project=project, annotator=annotator):
            # Gold has no target: every annotator answers it, so it takes no slot (and needs no
            # lock); the unique constraint on leases still stops a second hand-out. Another
            # session of this annotator may have leased it since the read: then ordinary work.
            try:
                with transaction.atomic():
                    return Lease.objects.create(
                        task=gold,
                        project=project,
                        annotator=annotator,
                        expires_at=expires,
                        shown_at=shown_at,
                        holds_slot=False,
                    )
            except IntegrityError as exc:
                if not _is_lease_repeat(exc):
                    raise
    # Each walk falls back on the other, so that nobody waits while either has work.
    walks = (True, False) if pool == "challenge" else (False, True)
    start = rng.randrange(RANDOM_KEY_MAX)
    if connection.vendor == "postgresql":
        return _lease_take_postgresql(
            project=project,
            annotator=annotator,
            walks=walks,
            start=start,
            expires=expires,
            shown_at=shown_at,
        )
    with transaction.atomic():
        for challenge in walks:
            task = _work_candidate(
                project=project, annotator=annotator, start=start, challenge=challenge
            )
            if task is not None:
                break
        else:
            return None
        take_slot(task=task)
        return Lease.objects.create(
            task=task,
            project=project,
            annotator=annotator,
            expires_at=expires,
            shown_at=shown_at,
            holds_slot=True,
        )


# The same walks as _work_candidate, for PostgreSQL: each is one range of a queue index (started
# tasks first, then unstarted ones from the random start key onwards, then those before it).
_WALK_WHERE = """
    SELECT t.id FROM annotate_task t
    WHERE t.project_id = %(project)s AND t.is_open AND NOT t.is_gold AND t.kind {kind} %(challenge)s
        AND {range}
        AND (t.author_id IS NULL OR t.author_id <> %(annotator)s)
        AND NOT EXISTS (
            SELECT 1 FROM annotate_lease l
            WHERE l.task_id = t.id AND l.annotator_id = %(annotator)s
        )
        AND NOT EXISTS (
            SELECT 1 FROM annotate_challengemark m
            JOIN annotate_challengeoption o ON o.id = m.option_id
            JOIN annotate_judgment j ON j.id = m.judgment_id
            WHERE o.pair_id = t.pair_id AND j.annotator_id = %(annotator)s
                AND t.kind <> %(challenge)s
        )
        AND NOT EXISTS (
            SELECT 1 FROM annotate_suspension s
            WHERE s.project_id = %(project)s AND s.annotator_id = %(annotator)s
                AND s.lifted_at IS NULL
        )
"""
_WALK = "(" + _WALK_WHERE + "    ORDER BY t.random_key LIMIT 1\n    FOR UPDATE OF t SKIP LOCKED\n)"
_RANGES = (
    "t.priority = 1",
    "t.priority = 0 AND t.random_key >= %(start)s",
    "t.priority = 0 AND t.random_key < %(start)s",
)
# When every SKIP LOCKED walk comes back empty, that is not yet "nothing to do": the rows they
# reached may only have been locked by others at that instant, or have moved from one walk's
# range to another's (a task taken by someone else changes priority) after the statement's
# snapshot. This walk decides: the whole queue index of one kind in its own order, with no range
# to move out of, waiting for each row another transaction holds and checking it again once
# that commits. It finds every task that was open to the annotator when it started and still
# is; it runs only when the fast walks found nothing, so the common path pays nothing for it.
_WALK_WAITING = (
    "(" + _WALK_WHERE + "    ORDER BY t.priority DESC, t.random_key LIMIT 1\n    FOR UPDATE OF t\n)"
)
# Take a slot on the first task any walk finds and lease it, in one statement that also returns
# what the annotator's screen shows. COALESCE stops at the first walk that finds a task, and
# PostgreSQL runs each walk (an InitPlan) only when it is first needed, so later walks cost
# nothing when an earlier one succeeds. The walk locks the task row, so the counters are read and
# written under the lock, as take_slot does.
_TAKE = """
WITH taken AS (
    UPDATE annotate_task
    SET lease_count = lease_count + 1, priority = 1,
        is_open = judgment_count + lease_count + 1 < target
    WHERE id = COALESCE({walks})
    RETURNING *
), leased AS (
    INSERT INTO annotate_lease
        (task_id, project_id, annotator_id, state, created_at, shown_at, expires_at, holds_slot)
    SELECT id, %(project)s, %(annotator)s, %(state)s, %(created)s, %(shown)s, %(expires)s, true
    FROM taken
    RETURNING id, task_id
)
SELECT leased.id, {columns}
FROM leased
JOIN taken ON taken.id = leased.task_id
JOIN datasets_image ON datasets_image.id = taken.image_id
LEFT JOIN datasets_pair ON datasets_pair.id = taken.pair_id
LEFT JOIN datasets_caption ON datasets_caption.id = datasets_pair.caption_id
"""
# The rows the statement returns beside the lease id, by table alias.
_TAKEN_MODELS = (
    ("taken", Task),
    ("datasets_image", Image),
    ("datasets_pair", Pair),
    ("datasets_caption", Caption),
)


def _lease_take_postgresql(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    walks: tuple[bool, bool],
    start: int,
    expires: datetime,
    shown_at: datetime | None,
) -> Lease | None:
    params = {
        "project": project.pk,
        "annotator": annotator.pk,
        "challenge": TaskKind.CHALLENGE.value,
        "start": start,
        "state": LeaseState.ACTIVE.value,
        "created": timezone.now(),
        "shown": shown_at,
        "expires": expires,
    }
    fast = ", ".join(
        _WALK.format(kind=_kind_test(challenge), range=walk_range)
        for challenge in walks
        for walk_range in _RANGES
    )
    # Not yet "nothing to do" when the fast walks find nothing: the waiting walks decide, one
    # kind after the other.
    waiting = [
        _WALK_WAITING.format(kind=_kind_test(challenge), range="true") for challenge in walks
    ]
    row = None
    for _attempt in range(_CONFLICT_ATTEMPTS):
        for walk_sql in (fast, *waiting):
            row = _take(walk_sql=walk_sql, params=params)
            if row is not None:
                break
        if row is not _REPEAT:
            break
    if row is None or row is _REPEAT:
        return None
    task, image, pair, caption = _instances(row[1:], [model for _, model in _TAKEN_MODELS])
    task.image = image
    if pair is not None:
        pair.caption = caption
    task.pair = pair
    values = {
        "id": row[0],
        "task_id": task.pk,
        "project_id": project.pk,
        "annotator_id": annotator.pk,
        "state": LeaseState.ACTIVE,
        "created_at": params["created"],
        "shown_at": shown_at,
        "expires_at": expires,
        "holds_slot": True,
    }
    lease = Lease.from_db(connection.alias, list(values), list(values.values()))
    lease.task = task
    lease.project = project
    return lease


def _kind_test(challenge: bool) -> str:
    return "=" if challenge else "<>"


# Two sessions of one annotator (two tabs, a script) can reach the same task at once: the
# walks' NOT EXISTS reads the lease table as of the statement's start, and a walk that finds the
# row locked by the other session re-checks only the task row once that commits. The insert then
# breaks the once-per-annotator constraint; the whole statement (slot and lease) is undone, and
# the walk runs again, now seeing the other session's lease. Each retry needs another session of
# the same annotator to win a race, so a few attempts are plenty.
_LEASE_ONCE = "annotate_lease_once_per_annotator"
_CONFLICT_ATTEMPTS = 3
_REPEAT = ()  # _take's answer when the annotator's other session took the task first


def _is_lease_repeat(exc: IntegrityError) -> bool:
    """Whether the error is the once-per-annotator lease constraint (the database names it)."""
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    # SQLite names no constraint, only the columns.
    return name == _LEASE_ONCE or (
        name is None and "annotate_lease.task_id, annotate_lease.annotator_id" in str(exc)
    )


def _take(*, walk_sql: str, params: dict) -> tuple | None:
    """Run the hand-out statement with these walks; the row it returns, None when the walks
    found nothing, or _REPEAT when the annotator's other session leased that task first."""
    columns = ", ".join(
        f"{alias}.{field.column}"
        for alias, model in _TAKEN_MODELS
        for field in model._meta.concrete_fields
    )
    # A savepoint only inside a caller's transaction: alone the statement is its own
    # transaction, and a failed one leaves nothing to roll back.
    guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with guard, connection.cursor() as cursor:
            cursor.execute(_TAKE.format(walks=walk_sql, columns=columns), params)
            return cursor.fetchone()
    except IntegrityError as exc:
        if not _is_lease_repeat(exc):
            raise
        return _REPEAT


def _instances(values: tuple, models: list[type[Model]]) -> list[Model | None]:
    """Model instances from consecutive slices of a row, each model's concrete columns in order;
    None for a model whose primary key is null (a LEFT JOIN that found nothing)."""
    instances: list[Model | None] = []
    for model in models:
        fields = model._meta.concrete_fields
        chunk, values = values[: len(fields)], values[len(fields) :]
        names = [field.attname for field in fields]
        pk = chunk[names.index(model._meta.pk.attname)]
        instances.append(None if pk is None else model.from_db(connection.alias, names, chunk))
    return instances


def _leased_by(annotator: AbstractBaseUser) -> Exists:
    return Exists(Lease.objects.filter(task=OuterRef("pk"), annotator=annotator))


# A pair judged in a challenge (a proposal, or the check) can also have a verify task: made gold,
# sent for one more judgment or to adjudication. Whoever judged it in the challenge does not get
# that task: their answer is in already, and a gold item would score them against themselves.
# _WALK_WHERE says the same in SQL. Challenges are not held back (a challenge task's pair is its
# check, which the same annotator may meet in several).
def _judged_in_challenge(annotator: AbstractBaseUser) -> Exists:
    return Exists(
        ChallengeMark.objects.filter(option__pair=OuterRef("pair"), judgment__annotator=annotator)
    )


def _work_pool(
    *, project: Project, annotator: AbstractBaseUser, challenge: bool = False
) -> QuerySet[Task]:
    """Open non-gold tasks the annotator may take; challenge items and the rest are separate
    walks (each has its own partial index)."""
    tasks = Task.objects.filter(project=project, is_open=True, is_gold=False)
    if challenge:
        tasks = tasks.filter(kind=TaskKind.CHALLENGE)
    else:
        tasks = tasks.exclude(kind=TaskKind.CHALLENGE).exclude(_judged_in_challenge(annotator))
    return (
        tasks.exclude(author=annotator)
        .exclude(_leased_by(annotator))
        .exclude(Exists(_suspensions(project=project, annotator=annotator)))
    )


def _suspensions(*, project: Project, annotator: AbstractBaseUser) -> QuerySet[Suspension]:
    """A suspended annotator gets no new work (nor gold, which needs work to exist)."""
    return Suspension.objects.filter(project=project, annotator=annotator, lifted_at__isnull=True)


def is_suspended(*, project: Project, annotator: AbstractBaseUser) -> bool:
    return _suspensions(project=project, annotator=annotator).exists()


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
        task = (
            candidates.select_for_update(skip_locked=True, of=("self",))
            .select_related("image", "pair__caption")
            .first()
        )
        if task is not None:
            return task
    return None


def _gold_candidate(
    *, project: Project, annotator: AbstractBaseUser, rng: random.Random
) -> Task | None:
    pool = (
        Task.objects.filter(project=project, is_gold=True)
        .exclude(_leased_by(annotator))
        .exclude(_judged_in_challenge(annotator))
        .select_related("image", "pair__caption")
    )
    start = rng.randrange(RANDOM_KEY_MAX)
    return (
        pool.filter(random_key__gte=start).order_by("random_key").first()
        or pool.filter(random_key__lt=start).order_by("random_key").first()
    )
