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


@shared_task(acks_late=True)
def build_release(release_id: int) -> str | None:
    """Build a queued release (default queue); a ready one is left alone, so a redelivery is harmless."""
    from datasets.releases import release_build

    release = release_build(release_id=release_id)
    return release.status if release is not None else None
