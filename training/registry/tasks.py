"""Celery tasks of the model registry: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from training.registry.services import model_train_leased, trainings_recover
from training.registry.services import nightly_retrain as nightly_plan_run


@shared_task(name="registry.train_model", acks_late=True)
def train_model(version_id: int) -> str | None:
    """Train one model version (routed to the "training" queue); a redelivery resumes it."""
    version = model_train_leased(version_id=version_id)
    return version.status if version is not None else None


@shared_task(name="registry.recover")
def recover_trainings() -> list[int]:
    """Beat entry (every minute): training runs whose worker died are sent again (they resume
    from the last stored epoch), or failed with the reason after CONCORD_JOB_MAX_RUNS tries."""
    return trainings_recover()


@shared_task(name="registry.nightly_retrain")
def nightly_retrain() -> list[dict]:
    """Beat entry: per project, cut or take the newest release and queue a training run on it;
    returns what was done or skipped per project, and why."""
    return [outcome.to_json() for outcome in nightly_plan_run()]
