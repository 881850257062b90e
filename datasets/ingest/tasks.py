"""Celery tasks of the ingest stage: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from datasets.ingest.services.thumbnails import thumbnails_make


@shared_task(name="ingest.make_thumbnails", acks_late=True)
def make_thumbnails(image_ids: list[int]) -> int:
    return thumbnails_make(image_ids=image_ids)
