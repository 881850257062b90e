from celery import shared_task

from datasets.cleaning import captions_check, images_clean
from datasets.thumbnails import thumbnails_make


@shared_task(acks_late=True)
def make_thumbnails(image_ids: list[int]) -> int:
    return thumbnails_make(image_ids=image_ids)


@shared_task(acks_late=True)
def clean_images(image_ids: list[int]) -> int:
    """Hashes, quality flags and duplicate clusters for new images, then their captions' flags."""
    return images_clean(image_ids=image_ids)


@shared_task(acks_late=True)
def check_captions(image_ids: list[int]) -> int:
    """Quality and duplicate flags for the captions of these images."""
    return captions_check(image_ids=image_ids)
