"""Celery tasks of the ingest stage: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from datasets.ingest.services.collection import (
    collection_run,
    collection_stage,
    collections_recover,
)
from datasets.ingest.services.jobs import import_job_run_leased, import_jobs_recover
from datasets.ingest.services.thumbnails import thumbnails_make
from datasets.models import ImportJob


@shared_task(name="ingest.make_thumbnails", acks_late=True)
def make_thumbnails(image_ids: list[int]) -> int:
    return thumbnails_make(image_ids=image_ids)


@shared_task(name="ingest.run_import", acks_late=True)
def run_import(job_id: int) -> str:
    """Run or resume an import job; a second delivery skips the rows already committed."""
    if not ImportJob.objects.filter(pk=job_id).exists():
        return "gone"  # deleted with its project since it was queued
    job = import_job_run_leased(job_id=job_id)
    return "running elsewhere" if job is None else job.status


@shared_task(name="ingest.recover")
def recover_imports() -> list[int]:
    """Beat entry (every minute): import jobs whose worker died are sent again, or failed with
    the reason after CONCORD_JOB_MAX_RUNS attempts; returns the job ids acted on."""
    return import_jobs_recover()


@shared_task(name="ingest.collect_stage", acks_late=True)
def collect_stage(job_id: int) -> str:
    """Read a collection's manifest into rows (resumes after the last committed chunk)."""
    if not ImportJob.objects.filter(pk=job_id).exists():
        return "gone"
    return collection_stage(job_id=job_id).status


@shared_task(name="ingest.collect_fetch", acks_late=True)
def collect_fetch(job_id: int) -> str:
    """Fetch a collection's rows for a while; queues itself again while rows remain."""
    return collection_run(job_id=job_id)


@shared_task(name="ingest.collect_recover")
def recover_collections() -> list[int]:
    """Beat entry (every minute): running collections whose fetch loops died are queued again."""
    return collections_recover()
