"""Cleaning a project's data: perceptual hashes, quality flags and caption duplicates.

What runs when: after an image is committed a worker calls ``images_clean`` (hashes, image
flags, joining its duplicate cluster, then its captions' flags); after a caption is added,
``captions_check`` for its image; ``project_clean`` (the ``dedup`` command) does the whole pass
for data imported while no worker ran. Each is safe to run twice and after a crash: an image's
hashes, flags and cluster are written in one transaction, marked by ``hashed_at``, and flags are
synchronised (a manager's override of a flag that still applies is kept).

Flagged items and duplicates are kept; ``images_held_back`` and ``captions_held_back`` are the
conditions under which they get no tasks (annotate/queue/services/pool.py) and stay out of releases.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from PIL import Image as PILImage

from datasets.curation.caption_dedup import DUPLICATE_EXACT, caption_duplicates
from datasets.curation.dedup import hash_to_signed, image_hashes_from_file
from datasets.curation.quality import QualityThresholds, caption_quality_flags, image_quality_flags
from datasets.curation.services.clusters import (
    ClusterSummary,
    clusters_join,
    clusters_recompute,
    project_lock,
)
from datasets.models import (
    Caption,
    CaptionFlag,
    ClusterMember,
    Image,
    ImageFlag,
    Project,
    Source,
)

CAPTION_DUPLICATE = "caption_duplicate"
CAPTION_DUPLICATE_EXACT_MESSAGE = "Repeats an earlier caption of this image."
CAPTION_DUPLICATE_NEAR_MESSAGE = (
    "Nearly repeats an earlier caption of this image ({similarity:.0%} of words shared)."
)

_BATCH = 200


@dataclass(frozen=True)
class CleanSummary:
    images_hashed: int
    images_already_hashed: int
    images_flagged: int
    captions_flagged: int
    captions_duplicate: int
    clusters: ClusterSummary


def quality_thresholds(*, project: Project) -> QualityThresholds:
    """The project's quality settings as the pure filters take them."""
    return QualityThresholds(
        image_min_width=project.quality_image_min_width,
        image_min_height=project.quality_image_min_height,
        image_max_aspect_ratio=project.quality_image_max_aspect_ratio,
        image_min_std=project.quality_image_min_std,
        caption_min_words=project.quality_caption_min_words,
        caption_max_words=project.quality_caption_max_words,
        caption_min_letter_ratio=project.quality_caption_min_letter_ratio,
        caption_max_token_share=project.quality_caption_max_token_share,
        caption_repeat_min_count=project.quality_caption_repeat_min_count,
    )


# --- held back from tasks and releases ----------------------------------------------------


def images_held_back(*, image: str = "pk") -> Q:
    """Images (``image`` names the id in the outer query) with a standing quality flag, or that
    are a duplicate of their cluster's canonical image."""
    return Q(
        Exists(ImageFlag.objects.filter(image=OuterRef(image), overridden_at__isnull=True))
    ) | Q(
        Exists(
            ClusterMember.objects.filter(image=OuterRef(image)).exclude(
                cluster__canonical=F("image")
            )
        )
    )


def captions_held_back(*, caption: str = "pk") -> Q:
    """Captions with a standing flag (quality, or repeating an earlier caption)."""
    return Q(
        Exists(CaptionFlag.objects.filter(caption=OuterRef(caption), overridden_at__isnull=True))
    )


# --- images -------------------------------------------------------------------------------


def images_clean(*, image_ids: Iterable[int]) -> int:
    """Hash, flag and cluster each image not yet done, then check its captions; returns how many
    images were done now. Images already done and ids that no longer exist are skipped."""
    done = 0
    ids = list(image_ids)
    for image_id in ids:
        done += image_clean(image_id=image_id)
    captions_check(image_ids=ids)
    return done


def image_clean(*, image_id: int) -> bool:
    """Hash one image, store its quality flags and join it to its duplicate cluster, all in one
    transaction; False when it was already done (or is gone)."""
    image = (
        Image.objects.filter(pk=image_id, hashed_at__isnull=True)
        .select_related("project")
        .only("pk", "file", "project")
        .first()
    )
    if image is None:
        return False
    # Decoding happens outside the transaction, so the project's lock is held only for writing.
    hashes, flags = _image_measure(image=image)
    with transaction.atomic():
        project = project_lock(project_id=image.project_id)
        if project is None:
            return False
        stored = Image.objects.filter(pk=image_id, hashed_at__isnull=True).update(
            phash=hash_to_signed(value=hashes.phash),
            dhash=hash_to_signed(value=hashes.dhash),
            hashed_at=timezone.now(),
        )
        if not stored:  # another worker finished it meanwhile
            return False
        _image_flags_sync(
            image_ids=[image_id], wanted={(image_id, f.code): f.message for f in flags}
        )
        clusters_join(project=project, image_ids=[image_id])
    return True


def _image_measure(*, image: Image):
    with default_storage.open(image.file.name, "rb") as handle:
        data = handle.read()
    hashes = image_hashes_from_file(file=io.BytesIO(data))
    with PILImage.open(io.BytesIO(data)) as picture:
        flags = image_quality_flags(
            image=picture, thresholds=quality_thresholds(project=image.project)
        )
    return hashes, flags


def _images_hash(*, project: Project, image_ids: list[int]) -> int:
    """Hash and flag images without joining clusters (the caller reclusters the project)."""
    images = list(
        Image.objects.filter(pk__in=image_ids, hashed_at__isnull=True)
        .select_related("project")
        .only("pk", "file", "project")
    )
    measured = {image.pk: _image_measure(image=image) for image in images}
    if not measured:
        return 0
    now = timezone.now()
    done = 0
    with transaction.atomic():
        project_lock(project_id=project.pk)
        wanted = {}
        for image_id, (hashes, flags) in measured.items():
            stored = Image.objects.filter(pk=image_id, hashed_at__isnull=True).update(
                phash=hash_to_signed(value=hashes.phash),
                dhash=hash_to_signed(value=hashes.dhash),
                hashed_at=now,
            )
            if stored:
                done += 1
                wanted.update({(image_id, f.code): f.message for f in flags})
            else:
                measured[image_id] = None
        _image_flags_sync(
            image_ids=[i for i, m in measured.items() if m is not None], wanted=wanted
        )
    return done


def _image_flags_sync(*, image_ids: list[int], wanted: dict[tuple[int, str], str]) -> None:
    existing = {(f.image_id, f.code): f for f in ImageFlag.objects.filter(image_id__in=image_ids)}
    stale = [f.pk for key, f in existing.items() if key not in wanted]
    ImageFlag.objects.filter(pk__in=stale).delete()
    ImageFlag.objects.bulk_create(
        [
            ImageFlag(image_id=image_id, code=code, message=message)
            for (image_id, code), message in wanted.items()
            if (image_id, code) not in existing
        ]
    )


# --- captions -----------------------------------------------------------------------------


def captions_check(*, image_ids: Iterable[int]) -> int:
    """Flag these images' captions (quality, and repeats of an earlier caption); returns how many
    captions stand flagged. Recomputes from scratch each time, keeping managers' overrides."""
    ids = list(image_ids)
    flagged = 0
    for start in range(0, len(ids), _BATCH):
        flagged += _captions_check_batch(image_ids=ids[start : start + _BATCH])
    return flagged


@transaction.atomic
def _captions_check_batch(*, image_ids: list[int]) -> int:
    rows = list(
        Caption.objects.filter(image_id__in=image_ids)
        .order_by("image_id", "id")
        .values_list("pk", "image_id", "text", "image__project_id", "source")
    )
    project_ids = {row[3] for row in rows}
    settings_by_project = {
        p.pk: (quality_thresholds(project=p), p.caption_similarity_threshold)
        for p in Project.objects.filter(pk__in=project_ids)
    }
    by_image: dict[int, list[tuple[int, str]]] = {}
    wanted: dict[tuple[int, str], tuple[str, int | None]] = {}
    project_of: dict[int, int] = {}
    for caption_id, image_id, text, project_id, source in rows:
        # A text-edit negative is close to the caption it was made from on purpose: it is not
        # a repeat of a description, so only the quality filters apply to it.
        if source != Source.TEXT_EDIT:
            by_image.setdefault(image_id, []).append((caption_id, text))
        project_of[image_id] = project_id
        thresholds, _ = settings_by_project[project_id]
        for flag in caption_quality_flags(text=text, thresholds=thresholds):
            wanted[(caption_id, flag.code)] = (flag.message, None)
    for image_id, captions in by_image.items():
        _, similarity = settings_by_project[project_of[image_id]]
        for dup in caption_duplicates(captions=captions, threshold=similarity):
            message = (
                CAPTION_DUPLICATE_EXACT_MESSAGE
                if dup.kind == DUPLICATE_EXACT
                else CAPTION_DUPLICATE_NEAR_MESSAGE.format(similarity=dup.similarity)
            )
            wanted[(dup.caption_id, CAPTION_DUPLICATE)] = (message, dup.duplicate_of)
    caption_ids = [row[0] for row in rows]
    existing = {
        (f.caption_id, f.code): f for f in CaptionFlag.objects.filter(caption_id__in=caption_ids)
    }
    CaptionFlag.objects.filter(
        pk__in=[f.pk for key, f in existing.items() if key not in wanted]
    ).delete()
    changed = []
    for key, flag in existing.items():
        if key in wanted and (flag.message, flag.duplicate_of_id) != wanted[key]:
            flag.message, flag.duplicate_of_id = wanted[key]
            changed.append(flag)
    CaptionFlag.objects.bulk_update(changed, ["message", "duplicate_of"])
    CaptionFlag.objects.bulk_create(
        [
            CaptionFlag(caption_id=caption_id, code=code, message=message, duplicate_of_id=of)
            for (caption_id, code), (message, of) in wanted.items()
            if (caption_id, code) not in existing
        ]
    )
    return len({caption_id for caption_id, _ in wanted})


# --- the whole pass -----------------------------------------------------------------------


def project_clean(
    *, project: Project, on_images: Callable[[int], None] | None = None
) -> CleanSummary:
    """Hash and flag every image still missing them, recluster the project honouring the
    manager's decisions, and flag every caption. Safe to interrupt and run again."""
    missing = list(
        project.images.filter(hashed_at__isnull=True).order_by("id").values_list("pk", flat=True)
    )
    hashed = 0
    for start in range(0, len(missing), _BATCH):
        batch = missing[start : start + _BATCH]
        hashed += _images_hash(project=project, image_ids=batch)
        if on_images is not None:
            on_images(len(batch))
    clusters = clusters_recompute(project=project)
    all_ids = list(project.images.order_by("id").values_list("pk", flat=True))
    captions_check(image_ids=all_ids)
    standing = CaptionFlag.objects.filter(
        caption__image__project=project, overridden_at__isnull=True
    )
    return CleanSummary(
        images_hashed=hashed,
        images_already_hashed=project.images.count() - len(missing),
        images_flagged=ImageFlag.objects.filter(image__project=project, overridden_at__isnull=True)
        .values("image")
        .distinct()
        .count(),
        captions_flagged=standing.values("caption").distinct().count(),
        captions_duplicate=standing.filter(code=CAPTION_DUPLICATE).count(),
        clusters=clusters,
    )


# --- overrides ----------------------------------------------------------------------------


def image_flag_override(
    *, flag: ImageFlag, user: AbstractBaseUser | None, overridden: bool = True
) -> ImageFlag:
    """A manager keeps (or, with ``overridden=False``, again holds back) a flagged image."""
    ImageFlag.objects.filter(pk=flag.pk).update(
        overridden_by=user if overridden else None,
        overridden_at=timezone.now() if overridden else None,
    )
    flag.refresh_from_db()
    return flag


def caption_flag_override(
    *, flag: CaptionFlag, user: AbstractBaseUser | None, overridden: bool = True
) -> CaptionFlag:
    """A manager keeps (or again holds back) a flagged caption."""
    CaptionFlag.objects.filter(pk=flag.pk).update(
        overridden_by=user if overridden else None,
        overridden_at=timezone.now() if overridden else None,
    )
    flag.refresh_from_db()
    return flag


# --- what the manager sees ----------------------------------------------------------------


@dataclass(frozen=True)
class FlagPage:
    flags: list
    next_after: int | None


def image_flags_page(*, project: Project, after: int | None, limit: int) -> FlagPage:
    """Image flags of the project, standing ones first page by page in id order (keyset)."""
    queryset = (
        ImageFlag.objects.filter(image__project=project)
        .select_related("image", "overridden_by")
        .order_by("id")
    )
    return _page(queryset=queryset, after=after, limit=limit)


def caption_flags_page(*, project: Project, after: int | None, limit: int) -> FlagPage:
    """Caption flags of the project in id order (keyset), with the caption repeated."""
    queryset = (
        CaptionFlag.objects.filter(caption__image__project=project)
        .select_related("caption", "duplicate_of", "overridden_by")
        .order_by("id")
    )
    return _page(queryset=queryset, after=after, limit=limit)


def _page(*, queryset, after: int | None, limit: int) -> FlagPage:
    if after is not None:
        queryset = queryset.filter(id__gt=after)
    rows = list(queryset[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return FlagPage(flags=rows, next_after=rows[-1].pk if has_more else None)


def flag_counts(*, project: Project) -> dict[str, int]:
    """Standing (not overridden) flags of the project, for the project page and review tabs."""
    return {
        "images": ImageFlag.objects.filter(image__project=project, overridden_at__isnull=True)
        .values("image")
        .distinct()
        .count(),
        "captions": CaptionFlag.objects.filter(
            caption__image__project=project, overridden_at__isnull=True
        )
        .values("caption")
        .distinct()
        .count(),
    }


@dataclass(frozen=True)
class CleaningOverview:
    duplicates: int
    flagged: int  # images and captions with a standing flag


def cleaning_overview(*, project: Project) -> CleaningOverview:
    """The two numbers the project page shows a manager."""
    counts = flag_counts(project=project)
    return CleaningOverview(
        duplicates=ClusterMember.objects.filter(cluster__project=project)
        .exclude(cluster__canonical=F("image"))
        .count(),
        flagged=counts["images"] + counts["captions"],
    )
