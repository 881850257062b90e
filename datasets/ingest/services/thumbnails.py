"""Thumbnails for grids and the annotator's preloading: small JPEGs made by a worker."""

import io

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from datasets.ingest.images import to_8bit, to_srgb
from datasets.models import Image

# A thumbnail at most this many times longer than wide (or wide than tall): a 100×30000 strip
# would otherwise shrink to a 1×320 line nobody can see. Longer pictures keep their centre.
MAX_ASPECT = 8


def _cropped_to_aspect(picture: PILImage.Image, ratio: float) -> PILImage.Image:
    width, height = picture.size
    if width > height * ratio:
        keep = max(1, round(height * ratio))
        left = (width - keep) // 2
        return picture.crop((left, 0, left + keep, height))
    if height > width * ratio:
        keep = max(1, round(width * ratio))
        top = (height - keep) // 2
        return picture.crop((0, top, width, top + keep))
    return picture


def thumbnail_bytes(data: bytes, *, size: int) -> bytes:
    """A JPEG no larger than size×size, keeping the aspect ratio up to MAX_ASPECT (beyond it,
    the centre), in sRGB with no metadata (no EXIF, XMP, comment or ICC profile, whatever the
    source file carried)."""
    with PILImage.open(io.BytesIO(data)) as picture:
        picture.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
        picture = _cropped_to_aspect(picture, MAX_ASPECT)
        picture.thumbnail((size, size))
        picture = to_8bit(to_srgb(picture))  # 16-bit grey scaled to 8 bits, not clipped
        if picture.mode not in ("RGB", "L"):
            picture = picture.convert("RGB")
        # Pillow writes some of .info back (a JPEG comment, for one): keep none of it.
        picture.info = {}
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()


def thumbnails_make(*, image_ids: list[int]) -> int:
    """Make the missing thumbnails among these images; returns how many were made.

    Safe to run twice: images that already have one are skipped, and ids that no longer exist are
    ignored.
    """
    made = 0
    for image in Image.objects.filter(pk__in=image_ids, thumbnail="").only("pk", "file", "project"):
        with default_storage.open(image.file.name, "rb") as source:
            data = thumbnail_bytes(source.read(), size=settings.CONCORD_THUMBNAIL_SIZE)
        name = default_storage.save(
            f"thumbnails/{image.project_id}/{image.pk}.jpg", ContentFile(data)
        )
        updated = Image.objects.filter(pk=image.pk, thumbnail="").update(thumbnail=name)
        if updated:
            made += 1
        else:  # another worker got there first
            default_storage.delete(name)
    return made
