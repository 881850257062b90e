"""Celery tasks of the curation stage: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from datasets.curation.services.cleaning import captions_check, images_clean


@shared_task(name="curation.clean_images", acks_late=True)
def clean_images(image_ids: list[int]) -> int:
    """Hashes, quality flags and duplicate clusters for new images, then their captions' flags."""
    return images_clean(image_ids=image_ids)


@shared_task(name="curation.check_captions", acks_late=True)
def check_captions(image_ids: list[int]) -> int:
    """Quality and duplicate flags for the captions of these images."""
    return captions_check(image_ids=image_ids)
