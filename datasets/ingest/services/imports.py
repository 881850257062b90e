"""Bulk import of records parsed from COCO files and manifests, shared by the commands and benches."""

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from datasets.ingest.captions import CaptionError, clean_caption
from datasets.ingest.images import content_sha256
from datasets.ingest.services.uploads import (
    Provenance,
    cleaning_enqueue,
    image_ingest,
    thumbnails_enqueue,
)
from datasets.ingest.sources import ImportRecord, Problem
from datasets.models import Caption, Image, Pair, PairKind, Project

IMAGE_FILE_MISSING = "image file not found: {name}"
IMAGE_PATH_UNSAFE = "image path leaves the images folder: {name}"

# Records per round trip: big enough to amortise queries, small enough to show steady progress.
_CHUNK = 100


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

    Each image is stored all-or-nothing on its own; captions are written per chunk of images. A bad
    image or caption is reported as a problem with its line or id, and the rest goes on.
    """
    summary = ImportSummary()
    root = images_dir.resolve()
    for chunk in _batched(records, _CHUNK):
        loaded = [
            (record, data, content_sha256(data))
            for record in chunk
            if (data := _read_image(record=record, root=root, summary=summary)) is not None
        ]
        known = dict(
            Image.objects.filter(
                project=project, sha256__in=[sha for _, _, sha in loaded]
            ).values_list("sha256", "pk")
        )
        image_ids: dict[int, ImportRecord] = {}
        new_ids: list[int] = []
        for record, data, sha256 in loaded:
            image_id = known.get(sha256)
            if image_id is not None:
                summary.images_existing += 1
            else:
                image_id = _ingest(
                    project=project,
                    record=record,
                    data=data,
                    source=source,
                    uploaded_by=uploaded_by,
                    summary=summary,
                )
                if image_id is not None:
                    new_ids.append(image_id)
            if image_id is not None:
                image_ids[image_id] = record
        _import_captions(
            records_by_image=image_ids, new_ids=set(new_ids), source=source, summary=summary
        )
        if new_ids:
            thumbnails_enqueue(image_ids=new_ids)
            cleaning_enqueue(image_ids=new_ids)
        if on_record is not None:
            for _ in chunk:
                on_record()
    return summary


def caption_import_key(text: str, occurrence: int) -> str:
    """Identity of an imported caption on its image: its normalised text and which repeat it is."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"{digest}:{occurrence}"


def _batched(items: Iterable[ImportRecord], size: int) -> Iterator[list[ImportRecord]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _read_image(*, record: ImportRecord, root: Path, summary: ImportSummary) -> bytes | None:
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
    return path.read_bytes()


def _ingest(
    *,
    project: Project,
    record: ImportRecord,
    data: bytes,
    source: str,
    uploaded_by: AbstractBaseUser | None,
    summary: ImportSummary,
) -> int | None:
    result = image_ingest(
        project=project,
        data=data,
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
    else:  # the same file twice in one import
        summary.images_existing += 1
    return result.image_id


def _import_captions(
    *,
    records_by_image: dict[int, ImportRecord],
    new_ids: set[int],
    source: str,
    summary: ImportSummary,
) -> None:
    wanted: dict[tuple[int, str], tuple[str, str]] = {}
    for image_id, record in records_by_image.items():
        seen: Counter[str] = Counter()
        for raw, where in record.captions:
            try:
                text = clean_caption(raw, max_chars=settings.CONCORD_MAX_CAPTION_CHARS)
            except CaptionError as exc:
                summary.problems.append(Problem(where, str(exc)))
                continue
            wanted[(image_id, caption_import_key(text, seen[text]))] = (raw, text)
            seen[text] += 1
    old_ids = [image_id for image_id in records_by_image if image_id not in new_ids]
    existing = set(
        Caption.objects.filter(image_id__in=old_ids)
        .exclude(import_key="")
        .values_list("image_id", "import_key")
    )
    with transaction.atomic():
        captions = Caption.objects.bulk_create(
            [
                Caption(image_id=image_id, text_raw=raw, text=text, source=source, import_key=key)
                for (image_id, key), (raw, text) in wanted.items()
                if (image_id, key) not in existing
            ]
        )
        Pair.objects.bulk_create(
            [
                Pair(image_id=caption.image_id, caption_id=caption.pk, kind=PairKind.POSITIVE)
                for caption in captions
            ]
        )
    summary.captions_added += len(captions)
    summary.captions_existing += len(wanted) - len(captions)
