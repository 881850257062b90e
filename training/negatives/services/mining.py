"""One mining run: proposals from every source, then challenge items for people to judge."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from config.celery import enqueue_on_commit
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


def mining_request(*, project: Project) -> None:
    """Ask a training worker to mine once the current transaction commits."""
    enqueue_on_commit("negatives.mine", project.pk, what=f"mining for project {project.slug}")
