"""Adding one image or one caption to a project, all-or-nothing; the file helpers every import
shares.

Uploads, zips and imports run as jobs (services/jobs.py), which use the same checks, file names
and provenance; ``image_ingest`` serves the single images of the demo data and the tests.
"""

import logging
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from config.celery import enqueue_on_commit
from datasets.ingest.captions import clean_caption
from datasets.ingest.images import CheckedImage, ImageRejected, check_image, content_sha256
from datasets.models import Caption, Image, Pair, PairKind, Project

logger = logging.getLogger(__name__)

DUPLICATE_IMAGE = "Already in this project (same file content)."

Status = Literal["accepted", "duplicate", "rejected"]


@dataclass(frozen=True)
class Provenance:
    source: str
    original_name: str = ""
    source_url: str = ""
    license_name: str = ""
    license_url: str = ""


@dataclass(frozen=True)
class IngestResult:
    name: str
    status: Status
    reason: str = ""
    image_id: int | None = None


def image_ingest(
    *,
    project: Project,
    data: bytes,
    provenance: Provenance,
    uploaded_by: AbstractBaseUser | None = None,
    make_thumbnail: bool = True,
) -> IngestResult:
    """Check one image file and store it with its provenance, or say why not.

    A file already in the project (same SHA-256 of its bytes) is reported as a duplicate and not
    stored twice. The file is written before its row; if the row cannot be written the file is
    removed again, so neither exists without the other.
    """
    name = provenance.original_name
    sha256 = content_sha256(data)
    existing_id = _image_id_by_hash(project=project, sha256=sha256)
    if existing_id is not None:
        return IngestResult(
            name=name, status="duplicate", reason=DUPLICATE_IMAGE, image_id=existing_id
        )
    try:
        checked = check_image(
            data,
            max_bytes=settings.CONCORD_MAX_IMAGE_BYTES,
            max_pixels=settings.CONCORD_MAX_IMAGE_PIXELS,
        )
    except ImageRejected as exc:
        return IngestResult(name=name, status="rejected", reason=str(exc))

    return _image_store(
        project=project,
        checked=checked,
        provenance=provenance,
        uploaded_by=uploaded_by,
        make_thumbnail=make_thumbnail,
    )


def _image_store(
    *,
    project: Project,
    checked: CheckedImage,
    provenance: Provenance,
    uploaded_by: AbstractBaseUser | None,
    make_thumbnail: bool,
) -> IngestResult:
    """Write the file, then its row; remove the file again if the row cannot be written."""
    name = provenance.original_name
    stored_name = image_file_save(project_id=project.pk, checked=checked)
    try:
        with transaction.atomic():
            image = Image.objects.create(
                project=project,
                file=stored_name,
                sha256=checked.sha256,
                width=checked.width,
                height=checked.height,
                format=checked.format,
                size_bytes=len(checked.content),
                source=provenance.source,
                original_name=name[:255],
                source_url=provenance.source_url,
                license_name=provenance.license_name,
                license_url=provenance.license_url,
                uploaded_by=uploaded_by,
            )
            if make_thumbnail:
                thumbnails_enqueue(image_ids=[image.pk])
                cleaning_enqueue(image_ids=[image.pk])
    except IntegrityError:
        # Lost a race with an identical upload; its row and file stand, ours go.
        image_file_discard(name=stored_name)
        existing_id = _image_id_by_hash(project=project, sha256=checked.sha256)
        return IngestResult(
            name=name, status="duplicate", reason=DUPLICATE_IMAGE, image_id=existing_id
        )
    except BaseException:
        image_file_discard(name=stored_name)
        raise
    return IngestResult(name=name, status="accepted", image_id=image.pk)


def image_file_name(*, project_id: int, sha256: str, extension: str) -> str:
    """Where an image's file lives in the default storage: named by its content, so a row
    written again after a crash finds (and replaces) the file its first attempt left."""
    return f"images/{project_id}/{sha256[:2]}/{sha256}{extension}"


def image_file_save(*, project_id: int, checked: CheckedImage) -> str:
    """Store checked bytes under their content name and return the name. A file already there
    that no Image row references is a leftover of a run that died before its commit: it is
    replaced. One that a row references is kept as it is (same content)."""
    name = image_file_name(
        project_id=project_id, sha256=checked.sha256, extension=checked.extension
    )
    if default_storage.exists(name):
        if Image.objects.filter(file=name).exists():
            return name
        default_storage.delete(name)
    return default_storage.save(name, ContentFile(checked.content))


def image_file_discard(*, name: str) -> None:
    """Remove a stored image file unless an Image row references it."""
    if not Image.objects.filter(file=name).exists():
        default_storage.delete(name)


@transaction.atomic
def caption_create(
    *,
    image: Image,
    text: str,
    source: str,
    author: AbstractBaseUser | None = None,
) -> Caption:
    """Add a caption to an image, with the positive pair it forms. Raises CaptionError if invalid."""
    normalised = clean_caption(text, max_chars=settings.CONCORD_MAX_CAPTION_CHARS)
    caption = Caption.objects.create(
        image=image, text_raw=text, text=normalised, author=author, source=source
    )
    Pair.objects.create(image=image, caption=caption, kind=PairKind.POSITIVE)
    captions_check_enqueue(image_ids=[image.pk])
    return caption


def thumbnails_enqueue(*, image_ids: list[int]) -> None:
    """Ask a worker for thumbnails once the images' rows are committed. A broker that is away
    does not fail the upload: pages fall back to the full image and `manage.py make_thumbnails`
    fills the gap later."""
    enqueue_on_commit(
        "ingest.make_thumbnails", image_ids, what=f"thumbnails for {len(image_ids)} images"
    )


def cleaning_enqueue(*, image_ids: list[int]) -> None:
    """Ask a worker for hashes, quality flags and duplicate clusters once the rows are committed
    (`manage.py dedup` catches up if the broker is away)."""
    enqueue_on_commit(
        "curation.clean_images", image_ids, what=f"cleaning of {len(image_ids)} images"
    )


def captions_check_enqueue(*, image_ids: list[int]) -> None:
    """Ask a worker to flag these images' captions once the new captions are committed."""
    enqueue_on_commit(
        "curation.check_captions", image_ids, what=f"caption checks of {len(image_ids)} images"
    )


def _image_id_by_hash(*, project: Project, sha256: str) -> int | None:
    return Image.objects.filter(project=project, sha256=sha256).values_list("pk", flat=True).first()
