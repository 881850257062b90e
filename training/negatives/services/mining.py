"""One mining run: proposals from every source, then challenge items for people to judge."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from config.celery import enqueue_on_commit
from config.jobs import job_running, jobs_recover
from datasets.models import Project
from training.negatives.services.challenges import challenges_open
from training.negatives.services.proposals import ProposalCounts, proposals_make

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningResult:
    proposals: ProposalCounts
    challenges: int

    def to_json(self) -> dict:
        return {"proposals": asdict(self.proposals), "challenges": self.challenges}


def mining_run(*, project: Project, seed: int | None = None, model: bool = True) -> MiningResult:
    proposals = proposals_make(project=project, seed=seed, model=model)
    challenges = challenges_open(project=project, seed=seed)
    logger.info("Mined %s for %s: %d challenge items", proposals, project.slug, challenges)
    return MiningResult(proposals=proposals, challenges=challenges)


MINE = "negatives.mine"
MINING_GAVE_UP = (
    "Its worker stopped answering {runs} times in a row (killed, out of memory or the machine "
    "went away): not tried again until mining is asked for again."
)


def mining_run_leased(*, project_id: int, seed: int | None = None) -> MiningResult | None:
    """``mining_run`` as a worker runs it: holding the project's mining lease with a heartbeat
    (config.jobs), so a second delivery while it mines does nothing and a run whose worker died
    is found by ``minings_recover``. None when the project is gone or another run holds it."""
    what = f"mining for project {project_id}"
    with job_running(MINE, str(project_id), project_id, seed, what=what) as lease:
        if lease is None:
            return None
        project = Project.objects.filter(pk=project_id).first()
        return None if project is None else mining_run(project=project, seed=seed)


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
    """Ask a training worker to mine once the current transaction commits."""
    enqueue_on_commit("negatives.mine", project.pk, what=f"mining for project {project.slug}")
