"""Celery tasks of hard-negative mining: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from datasets.models import Project
from training.negatives.services.mining import mining_run


@shared_task(name="negatives.mine", acks_late=True)
def mine_negatives(project_id: int, seed: int | None = None) -> dict | None:
    """Propose negatives from every source and bundle them into challenge items (routed to the
    "training" queue: it loads the promoted model). Safe to run twice: quotas count pending
    proposals, so a rerun tops up instead of adding more."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    return mining_run(project=project, seed=seed).to_json()
