"""One mining run: proposals from every source, then challenge items for people to judge."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from django.db import transaction

from datasets.models import Project
from negatives.challenges import challenges_open
from negatives.proposals import ProposalCounts, proposals_make

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
    """Ask a worker to mine once the current transaction commits."""
    from negatives.tasks import mine_negatives

    def send() -> None:
        try:
            mine_negatives.delay(project.pk)
        except Exception:
            logger.exception("Could not enqueue mining for project %s", project.slug)

    transaction.on_commit(send)
