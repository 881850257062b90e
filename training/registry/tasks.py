from celery import shared_task


@shared_task(acks_late=True)
def train_model(version_id: int) -> str | None:
    """Train one model version (routed to the "training" queue); a redelivery resumes it."""
    from training.registry.versions import model_train

    version = model_train(version_id=version_id)
    return version.status if version is not None else None


@shared_task
def nightly_retrain() -> list[dict]:
    """Beat entry: per project, cut or take the newest release and queue a training run on it;
    returns what was done or skipped per project, and why."""
    from training.registry.versions import nightly_retrain as retrain

    return [outcome.to_json() for outcome in retrain()]
