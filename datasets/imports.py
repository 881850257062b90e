"""Bulk import of records parsed from COCO files and manifests, shared by the commands and benches."""

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from datasets.captions import CaptionError, clean_caption
from datasets.ingest import Provenance, image_ingest, thumbnails_enqueue
from datasets.models import Caption, Pair, PairKind, Project
from datasets.sources import ImportRecord, Problem

IMAGE_FILE_MISSING = "image file not found: {name}"
IMAGE_PATH_UNSAFE = "image path leaves the images folder: {name}"

_THUMBNAIL_BATCH = 200


@dataclass
class ImportSummary:
    images_added: int = 0
    images_existing: int = 0
    captions_added: int = 0
    captions_existing: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def added_anything(self) -> bool:
        return bool(self.images_added or self.captions_added)


def records_import(
    *,
    project: Project,
    records: Iterable[ImportRecord],
    images_dir: Path,
    source: str,
    uploaded_by: AbstractBaseUser | None = None,
    on_record: Callable[[], None] | None = None,
) -> ImportSummary:
    """Import images and their captions; running it again with the same input adds nothing.

    Each image and its captions are committed together; a bad image or caption is reported as a
    problem and the rest of the import goes on.
    """
    summary = ImportSummary()
    root = images_dir.resolve()
    waiting_thumbnails: list[int] = []
    for record in records:
        image_id = _import_image(
            project=project,
            record=record,
            root=root,
            source=source,
            uploaded_by=uploaded_by,
            summary=summary,
            waiting_thumbnails=waiting_thumbnails,
        )
        if image_id is not None:
            _import_captions(image_id=image_id, record=record, source=source, summary=summary)
        if len(waiting_thumbnails) >= _THUMBNAIL_BATCH:
            thumbnails_enqueue(image_ids=waiting_thumbnails)
            waiting_thumbnails = []
        if on_record is not None:
            on_record()
    if waiting_thumbnails:
        thumbnails_enqueue(image_ids=waiting_thumbnails)
    return summary


def caption_import_key(text: str, occurrence: int) -> str:
    """Identity of an imported caption on its image: its normalised text and which repeat it is."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"{digest}:{occurrence}"


def _import_image(
    *,
    project: Project,
    record: ImportRecord,
    root: Path,
    source: str,
    uploaded_by: AbstractBaseUser | None,
    summary: ImportSummary,
    waiting_thumbnails: list[int],
) -> int | None:
    path = (root / record.file_name).resolve()
    if not path.is_relative_to(root):
        summary.problems.append(
            Problem(record.where, IMAGE_PATH_UNSAFE.format(name=record.file_name))
        )
        return None
    if not path.is_file():
        summary.problems.append(
            Problem(record.where, IMAGE_FILE_MISSING.format(name=record.file_name))
        )
        return None
    result = image_ingest(
        project=project,
        data=path.read_bytes(),
        provenance=Provenance(
            source=source,
            original_name=record.file_name,
            source_url=record.source_url,
            license_name=record.license_name,
            license_url=record.license_url,
        ),
        uploaded_by=uploaded_by,
        make_thumbnail=False,
    )
    if result.status == "rejected":
        summary.problems.append(Problem(record.where, f"{record.file_name}: {result.reason}"))
        return None
    if result.status == "accepted":
        summary.images_added += 1
        waiting_thumbnails.append(result.image_id)
    else:
        summary.images_existing += 1
    return result.image_id


def _import_captions(
    *, image_id: int, record: ImportRecord, source: str, summary: ImportSummary
) -> None:
    wanted: dict[str, tuple[str, str]] = {}
    seen: Counter[str] = Counter()
    for raw, where in record.captions:
        try:
            text = clean_caption(raw, max_chars=settings.CONCORD_MAX_CAPTION_CHARS)
        except CaptionError as exc:
            summary.problems.append(Problem(where, str(exc)))
            continue
        wanted[caption_import_key(text, seen[text])] = (raw, text)
        seen[text] += 1
    if not wanted:
        return
    with transaction.atomic():
        existing = set(
            Caption.objects.filter(image_id=image_id, import_key__in=wanted).values_list(
                "import_key", flat=True
            )
        )
        captions = Caption.objects.bulk_create(
            [
                Caption(image_id=image_id, text_raw=raw, text=text, source=source, import_key=key)
                for key, (raw, text) in wanted.items()
                if key not in existing
            ]
        )
        Pair.objects.bulk_create(
            [
                Pair(image_id=image_id, caption_id=caption.pk, kind=PairKind.POSITIVE)
                for caption in captions
            ]
        )
    summary.captions_added += len(captions)
    summary.captions_existing += len(existing)
