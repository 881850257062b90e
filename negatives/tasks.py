from celery import shared_task

from datasets.models import Project


@shared_task(acks_late=True)
def mine_negatives(project_id: int, seed: int | None = None) -> dict | None:
    """Propose negatives from every source and bundle them into challenge items (routed to the
    "training" queue: it loads the promoted model). Safe to run twice: quotas count pending
    proposals, so a rerun tops up instead of adding more."""
    from negatives.mining import mining_run

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    return mining_run(project=project, seed=seed).to_json()
