"""Celery tasks of hard-negative mining: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from training.negatives.services.mining import mining_run_leased, minings_recover


@shared_task(name="negatives.mine", acks_late=True)
def mine_negatives(project_id: int, seed: int | None = None) -> dict | None:
    """Propose negatives from every source and bundle them into challenge items (routed to the
    "training" queue: it loads the promoted model). Safe to run twice: quotas count pending
    proposals, so a rerun tops up instead of adding more."""
    result = mining_run_leased(project_id=project_id, seed=seed)
    return result.to_json() if result is not None else None


@shared_task(name="negatives.recover")
def recover_minings() -> list[int]:
    """Beat entry (every minute): mining runs whose worker died are sent again, or given up with
    the reason after CONCORD_JOB_MAX_RUNS tries; returns the project ids acted on."""
    return minings_recover()
