"""Scheduling agreement recomputes: requested often, run at most one at a time per project.

Every judgment may ask for fresh figures (annotate.queue asks by task name through
``config.jobs``, as this module does); the requests of a project coalesce into at most one
waiting message on the ``agreement`` queue, sent CONCORD_AGREEMENT_DELAY seconds after the first
of them, and one run at a time. A recompute started while another runs leaves its work to that
run, which runs once more when it ends. Runs are incremental (only items whose outcome changed
are written) unless a full one was asked for (the page's button). The run's phase and counts are
on its ``JobLease`` row for the page to show.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from annotate.agreement.services.consensus import consensus_recompute
from config.jobs import (
    job_heartbeat,
    job_recover,
    job_request,
    job_resend,
    job_running,
    jobs_lost,
    jobs_stale,
)
from datasets.models import JobLease, Project

RECOMPUTE = "agreement.recompute"

# The page shows a failed run's reason in words: the stored error of a run that raised is the
# exception's type and text (for the log and the admin), which means nothing to a manager.
RECOMPUTE_FAILED = (
    "The last recompute failed: {reason}. The figures shown are from the run before it. "
    "Press Recompute to try again; if it fails again, the agreement worker's log has the details."
)
_REASONS = {
    "OperationalError": "the database refused or dropped one of its queries",
    "InterfaceError": "the connection to the database was lost",
    "MemoryError": "the worker ran out of memory",
    "SoftTimeLimitExceeded": "it ran past its time limit",
    "TimeLimitExceeded": "it ran past its time limit",
}
_UNEXPECTED = "an unexpected error in the computation"
# How config.jobs stores a run that raised: "TypeName: message".
_RAISED = re.compile(r"^(?P<type>[A-Za-z_][A-Za-z0-9_]*): ")


def recompute_failure(error: str) -> str:
    """The failure of a recompute as the page says it: the stored error when it is already a
    sentence (a worker lost, a job given up), else what kind of failure it was, in words."""
    raised = _RAISED.match(error)
    if not error or raised is None:
        return error
    return RECOMPUTE_FAILED.format(reason=_REASONS.get(raised["type"], _UNEXPECTED))


def _what(project_id: int) -> str:
    return f"agreement recompute of project {project_id}"


def recompute_request(*, project_id: int, delay: float | None = None, full: bool = False) -> None:
    """Ask for a recompute of the project once the current transaction commits; coalesced with
    the waiting one. ``delay`` (seconds, default CONCORD_AGREEMENT_DELAY) gathers the requests
    that follow into the same run; ``full`` rewrites every item whose figures changed."""
    job_request(
        RECOMPUTE,
        str(project_id),
        project_id,
        what=_what(project_id),
        options={"full": True} if full else None,
        countdown=settings.CONCORD_AGREEMENT_DELAY if delay is None else delay,
    )


def consensus_recompute_job(*, project_id: int) -> bool:
    """Run one requested recompute of the project (the ``agreement.recompute`` task); False when
    another run holds the project (it runs again for this request) or the project is gone."""
    with job_running(RECOMPUTE, str(project_id), project_id, what=_what(project_id)) as lease:
        if lease is None:
            return False
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return False
        started = time.monotonic()
        job_heartbeat(lease, phase="reading")
        full = bool(lease.options.get("full"))

        def progress(**done: object) -> None:
            # The first write ends the reading (judgments, Dawid–Skene, the verdicts): what is
            # left is the cost of the items that changed.
            if "read_seconds" not in lease.progress:
                done["read_seconds"] = round(time.monotonic() - started, 3)
            job_heartbeat(lease, **done)

        result = consensus_recompute(project=project, full=full, progress=progress)
        job_heartbeat(
            lease,
            phase="done",
            full=full,
            seconds=round(time.monotonic() - started, 3),
            reopened=result.reopened,
            last_judgment_id=result.snapshot.last_judgment_id,
        )
    return True


def recomputes_recover() -> int:
    """Send again every recompute whose worker stopped beating, and every request whose message
    was lost: queued for longer than CONCORD_AGREEMENT_DELAY plus the recompute's stale time
    with no run started (a worker killed while it held the delayed message, which Redis hands
    back only after its visibility timeout). What beat runs each minute; how many were sent."""
    dead = sum(
        job_recover(lease, int(lease.key), what=_what(int(lease.key)))
        for lease in jobs_stale(RECOMPUTE)
    )
    waited = settings.CONCORD_AGREEMENT_DELAY + settings.CONCORD_JOB_STALE_SECONDS.get(
        RECOMPUTE, settings.CONCORD_JOB_STALE_SECONDS["*"]
    )
    lost = sum(
        job_resend(lease, int(lease.key), what=_what(int(lease.key)))
        for lease in jobs_lost(RECOMPUTE, seconds=waited)
    )
    return dead + lost


@dataclass(frozen=True)
class RecomputeProgress:
    waiting: bool  # a message waits on the broker
    running: bool
    phase: str  # reading, items, pairs, done ("" before the first run)
    done: int
    total: int
    requested_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None  # how long the last finished run took
    written: int | None  # items it rewrote
    error: str  # why the last run failed, in words for the page ("" when it did not)

    @property
    def percent(self) -> int:
        return min(100, self.done * 100 // self.total) if self.total else 0


def recompute_progress(*, project: Project) -> RecomputeProgress:
    """Where the project's recompute stands, for the agreement page."""
    lease = JobLease.objects.filter(name=RECOMPUTE, key=str(project.pk)).first()
    if lease is None:
        return RecomputeProgress(False, False, "", 0, 0, None, None, None, None, None, "")
    progress = lease.progress or {}
    return RecomputeProgress(
        waiting=lease.pending,
        running=lease.running,
        phase=str(progress.get("phase", "")),
        done=int(progress.get("done", 0)),
        total=int(progress.get("total", 0)),
        requested_at=lease.requested_at,
        started_at=lease.started_at,
        finished_at=lease.finished_at,
        seconds=progress.get("seconds"),
        written=progress.get("written"),
        error=recompute_failure(lease.error),
    )
