"""Background jobs that coalesce and recover: at most one message waiting and one run at a time.

A job is a Celery task name and a key (what it works on, e.g. a project id) with one
``datasets.models.JobLease`` row. ``job_request`` sends the task only when no message of that
job is waiting yet, so a thousand requests in a minute become one message; ``job_running`` claims
the job for the worker that runs it, beats its heart while it works and releases it, sending one
more message when requests came while it ran. A run whose heartbeat is older than its stale time
lost its worker (killed, out of memory, machine gone): ``jobs_stale`` finds it for a periodic task,
which sends it again (``job_recover``).

Every write here is one short transaction of its own on one small row, so SQLite's single write
lock is never held for long and the annotators' submits never wait on a recompute's claim.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from config.celery import enqueue
from datasets.models import JobLease

logger = logging.getLogger(__name__)

WORKER_LOST = "Its worker stopped answering (killed or out of memory): sent again."
# The lease option that marks a job cancelled with ``job_cancel(mark=True)``: every message of it
# (one sent before the cancel, or one the broker delivers again after a visibility timeout)
# then does nothing, until a new request clears the mark.
CANCELLED = "cancelled"


def worker_name() -> str:
    """This process as a heartbeat names it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _lease_get(*, name: str, key: str) -> JobLease:
    try:
        return JobLease.objects.get_or_create(name=name, key=key)[0]
    except IntegrityError:  # created by another process between the get and the create
        return JobLease.objects.get(name=name, key=key)


def job_request(
    name: str,
    key: str,
    *args: object,
    what: str,
    options: dict | None = None,
    countdown: float | None = None,
) -> None:
    """Ask for the job ``name``/``key`` (task ``name`` sent with ``args``) once the current
    transaction commits; coalesced: nothing is sent while a message of it waits.

    ``options`` (JSON) are merged into the waiting request (``{"full": True}`` stays true);
    ``countdown`` (seconds) delays the message, gathering the requests of that time into one
    run. A broker that is away is logged with ``what`` and the request is forgotten, so the next
    one sends again. A waiting message older than CONCORD_JOB_PENDING_SECONDS is taken for lost
    and sent again.
    """
    # robust: the answer that asked is committed; a request that fails (a database busy for
    # longer than its timeout) is logged and the next request or beat's catch-up sends it.
    transaction.on_commit(
        lambda: job_request_now(name, key, *args, what=what, options=options, countdown=countdown),
        robust=True,
    )


def job_request_now(
    name: str,
    key: str,
    *args: object,
    what: str,
    options: dict | None = None,
    countdown: float | None = None,
    resend: bool = False,
) -> bool:
    """``job_request`` at once (outside a transaction); True when a message was sent.

    A new request for a job no run holds starts its count of deaths in a row afresh;
    ``resend`` (recovery sending a dead run again) keeps the count."""
    now = timezone.now()
    lost = now - timedelta(seconds=settings.CONCORD_JOB_PENDING_SECONDS)
    # A plain read first: while a message waits (nearly always, under load) a request costs one
    # indexed read and takes no lock, so concurrent submits never queue on this row.
    waiting = (
        JobLease.objects.filter(name=name, key=key, pending=True, requested_at__gt=lost)
        .values_list("options", flat=True)
        .first()
    )
    if waiting is not None and not options:
        return False
    if waiting is not None and all(waiting.get(k) == v for k, v in options.items()):
        return False
    _lease_get(name=name, key=key)
    with transaction.atomic():
        lease = JobLease.objects.select_for_update().get(name=name, key=key)
        merged = {**lease.options, **(options or {})} if lease.pending else dict(options or {})
        if lease.pending and lease.requested_at and lease.requested_at > lost:
            if merged != lease.options:
                lease.options = merged
                lease.save(update_fields=["options"])
            return False
        lease.pending, lease.options, lease.requested_at = True, merged, now
        if not resend and lease.heartbeat_at is None:
            # Asked for anew: earlier runs (finished, or given up) are not deaths of this one.
            lease.runs = 0
        lease.save(update_fields=["pending", "options", "requested_at", "runs"])
    try:
        enqueue(name, *args, countdown=countdown)
    except Exception:
        logger.exception("Could not enqueue %s (%s)", what, name)
        JobLease.objects.filter(pk=lease.pk).update(pending=False)
        return False
    return True


def _stale_seconds(name: str) -> int:
    return settings.CONCORD_JOB_STALE_SECONDS.get(name, settings.CONCORD_JOB_STALE_SECONDS["*"])


def job_start(name: str, key: str) -> JobLease | None:
    """Claim the job for this process; None when another live run holds it (that run is then
    asked to run once more when it ends, so this message's work is not lost).

    The returned lease's ``options`` are what the requests since the last start asked for.
    None, with nothing written, for a job cancelled with ``job_cancel(mark=True)`` and not asked
    for since: however often the broker delivers its messages, none of them runs it.
    """
    _lease_get(name=name, key=key)
    now = timezone.now()
    with transaction.atomic():
        lease = JobLease.objects.select_for_update().get(name=name, key=key)
        if lease.options.get(CANCELLED) and not lease.pending and lease.heartbeat_at is None:
            return None
        alive = now - timedelta(seconds=_stale_seconds(name))
        if lease.heartbeat_at is not None and lease.heartbeat_at > alive:
            lease.again, lease.pending = True, False
            lease.save(update_fields=["again", "pending"])
            return None
        options = lease.options
        lease.pending, lease.options = False, {}
        lease.worker, lease.started_at, lease.heartbeat_at = worker_name(), now, now
        lease.runs += 1
        lease.progress, lease.error = {}, ""
        lease.save()
    lease.options = options
    return lease


def job_alive(name: str, key: str) -> bool:
    """Whether a live run holds the job (its heartbeat is younger than its stale time)."""
    alive = timezone.now() - timedelta(seconds=_stale_seconds(name))
    return JobLease.objects.filter(name=name, key=key, heartbeat_at__gt=alive).exists()


def job_heartbeat(lease: JobLease, **progress: object) -> bool:
    """Say the run is alive and how far it is (``progress``: JSON values, merged); False when
    the job is no longer this run's (it was taken for dead and sent again)."""
    lease.progress = {**lease.progress, **progress}
    return bool(
        JobLease.objects.filter(
            pk=lease.pk, worker=lease.worker, heartbeat_at__isnull=False
        ).update(heartbeat_at=timezone.now(), progress=lease.progress)
    )


def job_finish(lease: JobLease, *args: object, what: str, error: str = "", **progress) -> None:
    """Release the job; when it was asked for while it ran, request it once more with ``args``."""
    with transaction.atomic():
        current = JobLease.objects.select_for_update().get(pk=lease.pk)
        if current.worker != lease.worker:
            return  # taken for dead and claimed again: that run reports
        again = current.again
        current.again, current.worker, current.heartbeat_at = False, "", None
        # The run ended by itself (done, failed or stopped): ``runs`` counts deaths in a row,
        # so the next death of this job is its first.
        current.runs = 0
        current.finished_at = timezone.now()
        current.progress = {**lease.progress, **progress}
        current.error = error[:2000]
        current.save()
    if again:
        job_request_now(lease.name, lease.key, *args, what=what)


def _heartbeats(lease: JobLease, stop: threading.Event) -> None:
    """Beat for ``lease`` every fifth of its stale time until ``stop``: a run is alive while its
    process is, however long one step of it takes (a Dawid–Skene fit, one big file)."""
    every = max(1.0, _stale_seconds(lease.name) / 5)
    try:
        while not stop.wait(every):
            JobLease.objects.filter(pk=lease.pk, worker=lease.worker).update(
                heartbeat_at=timezone.now()
            )
    except Exception:  # a database away for a moment: the next beat or the run's end tells
        logger.exception("Heartbeat of %s failed", lease)
    finally:
        connection.close()


@contextmanager
def job_running(name: str, key: str, *args: object, what: str) -> Iterator[JobLease | None]:
    """Claim, run and release a job around the ``with`` block (``args``: the task's, to send it
    again), with a heartbeat thread while it runs. Yields None when another run holds it. An
    exception is stored as the run's error and raised on."""
    lease = job_start(name, key)
    if lease is None:
        yield None
        return
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeats, args=(lease, stop), daemon=True)
    beat.start()
    try:
        yield lease
    except BaseException as error:
        stop.set()
        beat.join()
        job_finish(lease, *args, what=what, error=f"{type(error).__name__}: {error}")
        raise
    stop.set()
    beat.join()
    job_finish(lease, *args, what=what)


def jobs_stale(name: str) -> list[JobLease]:
    """Runs of ``name`` whose heartbeat is older than its stale time: their worker died."""
    alive = timezone.now() - timedelta(seconds=_stale_seconds(name))
    return list(JobLease.objects.filter(name=name, heartbeat_at__lt=alive))


def jobs_lost(name: str, *, seconds: float) -> list[JobLease]:
    """Requests of ``name`` waiting for longer than ``seconds`` with no run started since:
    their message was lost (taken by a worker that died before it acknowledged it, or gone with
    the broker), so nothing runs them until Redis's visibility timeout (hours) hands it back."""
    lost = timezone.now() - timedelta(seconds=seconds)
    return list(
        JobLease.objects.filter(
            name=name, pending=True, requested_at__lt=lost, heartbeat_at__isnull=True
        )
    )


def job_resend(lease: JobLease, *args: object, what: str) -> bool:
    """Send a lost request (``jobs_lost``) again at once, keeping its options; False when a run
    started or another process sent it again in the meantime. A message that was only slow
    runs too: that is one recompute more, which changes nothing."""
    with transaction.atomic():
        current = JobLease.objects.select_for_update().get(pk=lease.pk)
        if not (
            current.pending
            and current.heartbeat_at is None
            and current.requested_at == lease.requested_at
        ):
            return False
        current.requested_at = timezone.now()
        current.save(update_fields=["requested_at"])
    logger.warning("%s: its message was lost (no run started): sent again", what)
    try:
        enqueue(lease.name, *args)
    except Exception:
        logger.exception("Could not enqueue %s (%s)", what, lease.name)
        JobLease.objects.filter(pk=lease.pk).update(pending=False)
        return False
    return True


def job_recover(
    lease: JobLease, *args: object, what: str, error: str = WORKER_LOST, resend: bool = True
) -> bool:
    """Release a dead run (with ``error``) and, with ``resend``, request the job again; False
    when it came back to life in the meantime."""
    alive = timezone.now() - timedelta(seconds=_stale_seconds(lease.name))
    released = JobLease.objects.filter(pk=lease.pk, heartbeat_at__lt=alive).update(
        heartbeat_at=None, worker="", error=error, finished_at=timezone.now(), again=False
    )
    if not released:
        return False
    logger.warning("%s: %s", what, error)
    if resend:
        job_request_now(lease.name, lease.key, *args, what=what, resend=True)
    return True


def jobs_recover(
    name: str,
    *,
    what: Callable[[int], str],
    gave_up: str,
    on_give_up: Callable[[int, str], object] | None = None,
    on_resend: Callable[[int], object] | None = None,
) -> list[int]:
    """What beat runs every minute for one kind of job: each run of ``name`` whose worker died
    (``jobs_stale``) is sent again with its integer key as the task's argument, or, after
    CONCORD_JOB_MAX_RUNS deaths in a row, released with ``gave_up`` (formatted with ``runs``)
    and handed to ``on_give_up(key, error)`` to fail the job's own row. ``on_resend(key)`` may
    note the resend on that row. Returns the keys acted on (a run that came back to life in
    the meantime is left alone and not counted)."""
    acted = []
    for lease in jobs_stale(name):
        key = int(lease.key)
        if lease.runs >= settings.CONCORD_JOB_MAX_RUNS:
            error = gave_up.format(runs=lease.runs)
            if job_recover(lease, key, what=what(key), error=error, resend=False):
                if on_give_up is not None:
                    on_give_up(key, error)
                acted.append(key)
        elif job_recover(lease, key, what=what(key)):
            if on_resend is not None:
                on_resend(key)
            acted.append(key)
    return acted


def job_cancel(name: str, key: str, *, error: str, mark: bool = False) -> None:
    """Take the job from whatever run holds it (its heartbeats then say so and it stops at its
    next check) and forget a waiting request. With ``mark`` (jobs with no row of their own to
    say they were cancelled) no message of the job runs it until it is asked for again."""
    JobLease.objects.filter(name=name, key=key).update(
        heartbeat_at=None,
        worker="",
        error=error,
        finished_at=timezone.now(),
        again=False,
        pending=False,
        **({"options": {CANCELLED: error}} if mark else {}),
    )
