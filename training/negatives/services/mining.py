"""One mining run: proposals from every source, then challenge items for people to judge.

A worker's run holds the project's ``negatives.mine`` job (config.jobs): its state (queued,
running, done, failed, cancelled) is that job's lease row, which the Negatives page shows with
Cancel and Retry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from config.jobs import (
    job_cancel,
    job_heartbeat,
    job_request,
    job_request_now,
    job_running,
    jobs_recover,
)
from datasets.models import JobLease, Project
from training.negatives.services.challenges import challenges_open
from training.negatives.services.proposals import ProposalCounts, proposals_make

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningResult:
    proposals: ProposalCounts
    challenges: int

    def to_json(self) -> dict:
        return {"proposals": asdict(self.proposals), "challenges": self.challenges}


def mining_run(
    *,
    project: Project,
    seed: int | None = None,
    model: bool = True,
    check: Callable[[str], None] | None = None,
) -> MiningResult:
    """Propose from every source, then bundle the pending proposals into challenge items.
    ``check(stage)`` is called between sources and between images; raising from it stops the
    run there (whatever is written is whole: batches of proposals, one image's items)."""
    check = check or (lambda stage: None)
    proposals = proposals_make(project=project, seed=seed, model=model, check=check)
    challenges = challenges_open(
        project=project, seed=seed, check=lambda done, total: check(f"challenges {done}/{total}")
    )
    logger.info("Mined %s for %s: %d challenge items", proposals, project.slug, challenges)
    return MiningResult(proposals=proposals, challenges=challenges)


MINE = "negatives.mine"
MINING_GAVE_UP = (
    "Its worker stopped answering {runs} times in a row (killed, out of memory or the machine "
    "went away): not tried again until mining is asked for again."
)


CANCELLED = "cancelled"
ERROR_CANCELLED = "Cancelled by {user}."
ERROR_NOT_CANCELLABLE = "Only a queued or running mining can be cancelled; mining is {status}."
ERROR_NOT_RETRYABLE = "Only a failed or cancelled mining can be retried; mining is {status}."
# How often a run's checks between images write its heartbeat and stage (seconds); in between
# they only read whether the job is still theirs, so a cancel stops it at the next image.
CHECK_SECONDS = 0.5


class MiningCancelled(Exception):
    """The run was cancelled (or taken for dead and sent again) while it mined."""


class MiningRefused(ValueError):
    """A cancel or retry that mining's state does not allow (409 with the reason)."""


def mining_run_leased(
    *, project_id: int, seed: int | None = None, on_stage: Callable[[str], None] | None = None
) -> MiningResult | None:
    """``mining_run`` as a worker runs it: holding the project's mining lease with a heartbeat
    (config.jobs), so a second delivery while it mines does nothing, a run whose worker died
    is found by ``minings_recover`` and a cancel stops it at its next check (``on_stage(stage)``
    is called at each). None when the project is gone, another run holds it, or it was
    cancelled and not asked for since (any message of it: sent before the cancel, or delivered
    again by the broker after a visibility timeout)."""
    what = f"mining for project {project_id}"
    with job_running(MINE, str(project_id), project_id, seed, what=what) as lease:
        if lease is None:
            return None
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return None
        beaten = time.monotonic()

        def check(stage: str) -> None:
            nonlocal beaten
            if on_stage is not None:
                on_stage(stage)
            if stage.startswith("challenges") and time.monotonic() - beaten < CHECK_SECONDS:
                # Between two images: a read (no write lock) says whether it is still ours.
                owned = JobLease.objects.filter(
                    pk=lease.pk, worker=lease.worker, heartbeat_at__isnull=False
                ).exists()
            else:
                beaten = time.monotonic()
                owned = job_heartbeat(lease, stage=stage)
            if not owned:
                raise MiningCancelled(stage)

        try:
            return mining_run(project=project, seed=seed, check=check)
        except MiningCancelled as stopped:
            # The job is no longer this run's: whoever took it reports.
            logger.warning("Mining for %s stopped at %s: cancelled", project.slug, stopped)
            return None


def minings_recover() -> list[int]:
    """Mining runs whose worker died (what beat runs every minute): sent again (quotas count
    what the dead run proposed, so the rerun tops up), or given up with MINING_GAVE_UP on the
    lease after CONCORD_JOB_MAX_RUNS deaths in a row. Returns the project ids acted on."""
    # The seed of the dead run is not kept: a rerun draws afresh (mining is not replayed).
    return jobs_recover(
        MINE,
        what=lambda project_id: f"mining for project {project_id}",
        gave_up=MINING_GAVE_UP,
    )


def mining_request(*, project: Project) -> None:
    """Ask a training worker to mine once the current transaction commits; coalesced with a
    request already waiting."""
    job_request(MINE, str(project.pk), project.pk, what=f"mining for project {project.slug}")


@dataclass(frozen=True)
class MiningState:
    """Where the project's mining stands, from its job lease: ``status`` is "" (never asked
    for), queued, running, done, failed or cancelled."""

    status: str
    stage: str
    error: str
    runs: int
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def can_cancel(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def can_retry(self) -> bool:
        return self.status in ("failed", CANCELLED)


def mining_state(*, project: Project) -> MiningState:
    """The project's mining as the Negatives page and the API show it."""
    lease = JobLease.objects.filter(name=MINE, key=str(project.pk)).first()
    if lease is None:
        return MiningState("", "", "", 0, None, None)
    stage = str((lease.progress or {}).get("stage", ""))
    if lease.heartbeat_at is not None:
        status = "running"
    elif lease.pending:
        status = "queued"
    elif stage == CANCELLED:
        status = CANCELLED
    elif lease.error:
        status = "failed"
    elif lease.finished_at is not None:
        status = "done"
    else:
        status = ""
    return MiningState(status, stage, lease.error, lease.runs, lease.started_at, lease.finished_at)


def mining_cancel(*, project: Project, by: AbstractBaseUser) -> MiningState:
    """Stop a queued or running mining: a running one stops at its next check (between
    sources, or between two images' challenge items), and a message still on its way mines
    nothing. What it wrote before stays: whole batches of proposals, which a later run bundles.
    Raises ``MiningRefused`` in any other state."""
    error = ERROR_CANCELLED.format(user=by.get_username())
    with transaction.atomic():
        lease = JobLease.objects.select_for_update().filter(name=MINE, key=str(project.pk)).first()
        state = mining_state(project=project)
        if lease is None or not state.can_cancel:
            raise MiningRefused(
                ERROR_NOT_CANCELLABLE.format(status=state.status or "not asked for")
            )
        # Marked: a message of it that is delivered later (one sent before the cancel, or one
        # the broker hands back after a visibility timeout) mines nothing until a new request.
        job_cancel(MINE, str(project.pk), error=error, mark=True)
        JobLease.objects.filter(pk=lease.pk).update(progress={"stage": CANCELLED})
    return mining_state(project=project)


def mining_retry(*, project: Project) -> MiningState:
    """Ask for mining again after it failed or was cancelled (sent at once; quotas make the
    run top up what an earlier one proposed). Raises ``MiningRefused`` in any other state."""
    with transaction.atomic():
        # Under the lease's row lock, and the state left "" until the request below marks it
        # queued: of two Retry clicks at once, the second finds nothing to retry (409).
        JobLease.objects.select_for_update().filter(name=MINE, key=str(project.pk)).first()
        state = mining_state(project=project)
        if not state.can_retry:
            raise MiningRefused(ERROR_NOT_RETRYABLE.format(status=state.status or "not asked for"))
        # A fresh count of attempts: the give-up rule counts deaths since the last retry.
        JobLease.objects.filter(name=MINE, key=str(project.pk), heartbeat_at=None).update(
            runs=0, error="", progress={}, options={}, finished_at=None
        )
    job_request_now(MINE, str(project.pk), project.pk, what=f"mining for project {project.slug}")
    return mining_state(project=project)
