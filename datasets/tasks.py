from celery import shared_task

from datasets.thumbnails import thumbnails_make


@shared_task(acks_late=True)
def make_thumbnails(image_ids: list[int]) -> int:
    return thumbnails_make(image_ids=image_ids)
