"""Celery tasks of the release stage: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from datasets.releases.services import release_build, releases_prune, releases_recover


@shared_task(name="releases.build", acks_late=True)
def build_release(release_id: int) -> str | None:
    """Build a queued release (default queue); a ready one is left alone, so a redelivery is harmless."""
    release = release_build(release_id=release_id)
    return release.status if release is not None else None


@shared_task(name="releases.prune")
def prune_releases() -> list[dict]:
    """Beat entry (hourly): apply release retention to every project (CONCORD_RELEASES_KEEP);
    returns the releases whose files were deleted. Running it twice prunes nothing more."""
    return [
        {"project": o.project, "release": o.release, "files": o.files} for o in releases_prune()
    ]


@shared_task(name="releases.recover")
def recover_releases() -> list[int]:
    """Beat entry (every minute): builds whose worker died are sent again, or failed with the
    reason after CONCORD_JOB_MAX_RUNS attempts; returns the release ids acted on."""
    return releases_recover()
