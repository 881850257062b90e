"""Cutting releases: a consistent snapshot of a project's labelled pairs, written as files.

``release_request`` numbers a release (v1, v2 …) and enqueues its build after commit;
``release_build`` does the work, safe to run twice (a ready release is left alone). The pure
parts live elsewhere: :mod:`datasets.releases.splits` (per-cluster, stable splits), :mod:`datasets.releases.balance`
(training weights), :mod:`datasets.releases.exporters` (every file format), :mod:`datasets.releases.datasheet`
and :mod:`datasets.releases.diff`. This module reads the database around them.

The snapshot. Every database read of a build happens inside one transaction: on PostgreSQL it
is opened ``REPEATABLE READ`` (one snapshot for every statement), on SQLite a read transaction
in WAL mode already is one. The pass over the pairs inside it streams rows ``ORDER BY
image_id, pair_id`` with a chunked iterator (a server-side cursor on PostgreSQL) into three
spool files, one per split, while counting labels; the transaction then ends, so no lock or
snapshot is held while files are written. Replaying the spools train, val, test gives the
``split, image_id, pair_id`` order the writers need with one query, and the label counts the
balance plan needs before the first training row is weighted.

The label of each pair, decided in SQL, first that applies:

``adjudicated``  a manager's adjudication of the item;
``gold``         a gold item's known answer (match / no match);
``crowd``        the aggregated item label, when its status is agreed;
``import``       a positive whose caption comes from a source the project trusts (unless
                 people disputed it);
``construction`` a random negative, a negative by construction (unless people disputed it).

Anything else (pending or disputed items, unjudged hard and text-edit negatives, untrusted
positives) stays out, as do held-back images and captions (non-canonical duplicates, standing
quality flags: :func:`datasets.curation.services.cleaning.images_held_back`).

Files are written into a temporary folder in the worker's scratch space, then stored in the
``releases`` storage (a local folder by default, S3 in production) under ``<slug>/v<n>/``,
manifest last; a failure deletes what was stored and marks the release failed with the reason.
Then the images' splits are stored (:class:`~datasets.models.ImageSplit`) with the ready status
in one transaction: the next release keeps every image where this one put it. Nothing a build
needs comes from a worker's own disk: the previous release's ``pairs.parquet`` (for the diff
and the datasheet) is read from storage and checked against its manifest, and a build whose
predecessor cannot be read fails rather than diff against nothing.

Each image is stored at most once per release: in the WebDataset shards when that format is
chosen, under ``images/`` when copying is asked for (the two are not offered together), else
not at all (rows name each image in the media storage). Retention (:func:`releases_prune`)
deletes the files of ready releases beyond the newest ``CONCORD_RELEASES_KEEP`` of a project,
never a pinned one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import marshal
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import (
    Avg,
    Case,
    F,
    FloatField,
    IntegerField,
    Max,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotate.agreement.services.consensus import snapshot_latest
from annotate.models import Answer, ItemStatus, Judgment, Task
from config.celery import enqueue_on_commit
from config.jobs import job_cancel, job_heartbeat, job_running, jobs_recover
from config.storage import (
    MEDIA,
    RELEASES,
    StoredFileError,
    scratch_dir,
    scratch_fetch,
    storage,
    storage_delete_tree,
    storage_download,
    storage_is_local,
    storage_read,
    storage_upload,
)
from datasets.curation.services.cleaning import captions_held_back, images_held_back
from datasets.models import (
    CaptionFlag,
    ClusterMember,
    Image,
    ImageFlag,
    ImageSplit,
    JobLease,
    Pair,
    PairKind,
    Project,
    Release,
    ReleaseStatus,
)
from datasets.releases.archive import Member
from datasets.releases.balance import (
    METHODS,
    BalanceTally,
    LabelCounts,
    apply_balance,
    plan_balance,
)
from datasets.releases.datasheet import (
    AgreementStats,
    CollectionStats,
    CompositionTally,
    DatasheetStats,
    PreprocessingStats,
    write_datasheet,
)
from datasets.releases.diff import DIFF_FILE, read_pair_states, write_diff
from datasets.releases.exporters import (
    FORMATS,
    IMAGES_DIR,
    MANIFEST,
    MAX_SAMPLES_PER_SHARD,
    PAIRS_PARQUET,
    ManifestEntry,
    export_rows,
    release_image_path,
    release_sinks,
    write_manifest,
)
from datasets.releases.exporters.manifest import release_files as folder_files
from datasets.releases.splits import SPLITS, assign_splits

logger = logging.getLogger(__name__)

CHUNK_SIZE = 5_000
PROGRESS_EVERY = 5_000
# Parquet is always written: the next release's diff reads it.
REQUIRED_FORMATS = ("parquet",)
SHARD_SAMPLES_MAX = 1_000_000
UPLOAD_THREADS = 8
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_SPLIT_MEMORY_BATCH = 5_000

ERROR_FORMATS_EMPTY = "Choose at least one format."
ERROR_UNKNOWN_FORMAT = "Unknown format {name!r}; expected some of {formats}."
ERROR_BALANCE_METHOD = "Unknown balance method {method!r}; expected one of {methods}."
ERROR_BALANCE_RATIO = "The negatives:positives ratio must be a positive number."
ERROR_SHARD_SAMPLES = "Shard size must be between 1 and {limit:,} samples."
ERROR_SPLIT_RATIOS = "The project's split ratios must sum to 1."
ERROR_IMAGES_TWICE = (
    "WebDataset shards already hold every image: choose copied images or WebDataset, not both "
    "(a release stores each image once)."
)
ERROR_PREDECESSOR = (
    "The previous release {previous} cannot be read from storage ({reason}), so this release's "
    "diff and datasheet cannot be written. Restore {previous}'s files, or mark them gone with "
    "`.venv/bin/python manage.py prune_releases {slug} --release {previous}`; the next build then compares "
    "with the newest release that can be read."
)
ERROR_FILES_GONE = "The files of release {release} cannot be read from storage ({reason})."
ERROR_NOT_READY = "Release {release} is {status}: it has no files to read."
ERROR_PIN_PRUNED = "Release {release} was pruned: its files are gone, so there is nothing to pin."
ERROR_PRUNE_PINNED = "Release {release} is pinned; unpin it first."
ERROR_PRUNE_STATUS = "Only a ready release can be pruned; {release} is {status}."
PRUNED_BY_RETENTION = "kept the newest {keep} releases (CONCORD_RELEASES_KEEP)"
PRUNED_BY_HAND = "pruned by hand"


class ReleaseFilesError(Exception):
    """A release's stored files cannot be read; the message says which and why."""


# (pair id, image id, caption id, caption, kind, label, label source, confidence, judgments,
#  sha256, storage name, format, width, height, licence, licence url, source url, name)
_ROW_FIELDS = (
    "pk",
    "image_id",
    "caption_id",
    "caption__text",
    "kind",
    "release_label",
    "release_source",
    "release_confidence",
    "release_judgments",
    "image__sha256",
    "image__file",
    "image__format",
    "image__width",
    "image__height",
    "image__license_name",
    "image__license_url",
    "image__source_url",
    "image__original_name",
)

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ReleaseOptions:
    """What a manager chooses when cutting a release, as stored in ``Release.options``."""

    formats: tuple[str, ...]
    copy_images: bool
    balance_method: str
    balance_ratio: float
    shard_samples: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["formats"] = list(self.formats)
        return data


def release_options(
    *,
    project: Project,
    formats: Sequence[str] | None = None,
    copy_images: bool = False,
    balance_method: str | None = None,
    balance_ratio: float | None = None,
    shard_samples: int | None = None,
) -> ReleaseOptions:
    """Checked options, the project's balance settings filling what is not given.

    Raises ``ValueError`` with one of this module's messages. Formats come back in the
    canonical order, Parquet always among them. Copied images and WebDataset shards are not
    chosen together: each image is stored once per release (with copies and no formats given,
    every format but WebDataset).
    """
    if formats is None:
        formats = [name for name in FORMATS if not (copy_images and name == "webdataset")]
    chosen = list(formats)
    if not chosen:
        raise ValueError(ERROR_FORMATS_EMPTY)
    for name in chosen:
        if name not in FORMATS:
            raise ValueError(ERROR_UNKNOWN_FORMAT.format(name=name, formats=", ".join(FORMATS)))
    if copy_images and "webdataset" in chosen:
        raise ValueError(ERROR_IMAGES_TWICE)
    wanted = set(chosen) | set(REQUIRED_FORMATS)
    method = balance_method if balance_method is not None else project.balance_method
    if method not in METHODS:
        raise ValueError(ERROR_BALANCE_METHOD.format(method=method, methods=", ".join(METHODS)))
    ratio = balance_ratio if balance_ratio is not None else project.balance_ratio
    if not ratio or ratio <= 0:
        raise ValueError(ERROR_BALANCE_RATIO)
    samples = MAX_SAMPLES_PER_SHARD if shard_samples is None else shard_samples
    if not 1 <= samples <= SHARD_SAMPLES_MAX:
        raise ValueError(ERROR_SHARD_SAMPLES.format(limit=SHARD_SAMPLES_MAX))
    return ReleaseOptions(
        formats=tuple(name for name in FORMATS if name in wanted),
        copy_images=bool(copy_images),
        balance_method=method,
        balance_ratio=float(ratio),
        shard_samples=int(samples),
    )


@transaction.atomic
def release_request(
    *,
    project: Project,
    user: AbstractBaseUser | None,
    options: ReleaseOptions,
    enqueue: bool = True,
) -> Release:
    """Number a new release of ``project`` and, after commit, queue its build."""
    # The project row lock serialises numbering; the unique constraint backs it up.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    last = Release.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0
    release = Release.objects.create(
        project=project,
        version=last + 1,
        options=options.to_json(),
        snapshot_at=timezone.now(),
        created_by=user if user is not None and user.is_authenticated else None,
        stage="queued",
    )
    if enqueue:
        release_enqueue(release_id=release.pk)
    return release


def release_enqueue(*, release_id: int) -> None:
    """Send the build to a worker once the release row is committed; if the broker is away the
    release stays queued and `manage.py build_release` or a retry builds it."""
    enqueue_on_commit("releases.build", release_id, what=f"the build of release {release_id}")


def release_manifest(*, release: Release) -> tuple[list[ManifestEntry], bytes]:
    """The entries of a ready release's stored ``manifest.json``, and its bytes.

    Raises :class:`ReleaseFilesError` when the release has no files (not ready, pruned) or its
    manifest cannot be read.
    """
    if release.status != ReleaseStatus.READY or not release.directory:
        raise ReleaseFilesError(
            ERROR_NOT_READY.format(release=release.name, status=release.get_status_display())
        )
    try:
        raw = storage_read(alias=RELEASES, name=f"{release.directory}/{MANIFEST}")
        data = json.loads(raw)
        entries = [
            ManifestEntry(path=f["path"], size=f["size"], sha256=f["sha256"]) for f in data["files"]
        ]
    except (StoredFileError, ValueError, KeyError, TypeError) as exc:
        raise ReleaseFilesError(ERROR_FILES_GONE.format(release=release.name, reason=exc)) from exc
    return entries, raw


def release_files(*, release: Release) -> list[dict[str, Any]]:
    """The files of a ready release as its manifest lists them (path, size, sha256), the
    manifest itself last. Raises :class:`ReleaseFilesError` (see :func:`release_manifest`)."""
    entries, raw = release_manifest(release=release)
    files = [asdict(entry) for entry in entries]
    files.append({"path": MANIFEST, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
    return files


def release_file_name(*, release: Release, path: str) -> str | None:
    """The storage name (``releases`` alias) of a file of a ready release, by the path its
    manifest gives; ``None`` for anything the manifest does not list. Raises
    :class:`ReleaseFilesError` when the manifest cannot be read."""
    if release.status != ReleaseStatus.READY:
        return None
    if path == MANIFEST:
        return f"{release.directory}/{MANIFEST}"
    entries, _raw = release_manifest(release=release)
    listed = {entry.path for entry in entries}
    return f"{release.directory}/{path}" if path in listed else None


def release_archive_name(*, release: Release) -> str:
    """The file name a browser saves the whole release under."""
    return f"{release.project.slug}-{release.name}.zip"


def release_archive_members(*, release: Release) -> list[Member]:
    """Every file of a ready release (the manifest last) as members of one zip, each opened
    from the ``releases`` storage when its turn comes (any backend: local or S3, no local path).
    Raises :class:`ReleaseFilesError` when the manifest cannot be read."""
    files = release_files(release=release)
    target = storage(RELEASES)

    def opener(name: str) -> Callable[[], Any]:
        return lambda: target.open(name, "rb")

    return [Member(path=f["path"], open=opener(f"{release.directory}/{f['path']}")) for f in files]


def release_datasheet(*, release: Release) -> str:
    """The text of a ready release's ``DATASHEET.md``. Raises :class:`ReleaseFilesError`."""
    name = release_file_name(release=release, path="DATASHEET.md")
    if name is None:
        return ""
    try:
        return storage_read(alias=RELEASES, name=name).decode("utf-8")
    except StoredFileError as exc:
        raise ReleaseFilesError(ERROR_FILES_GONE.format(release=release.name, reason=exc)) from exc


def release_local_pairs(*, release: Release) -> Path:
    """A local folder holding the release's ``pairs.parquet``, fetched from storage into this
    worker's scratch cache (named by its SHA-256, checked against the manifest) unless already
    there. What training reads. Raises :class:`ReleaseFilesError`."""
    entries, _raw = release_manifest(release=release)
    entry = next((e for e in entries if e.path == PAIRS_PARQUET), None)
    if entry is None:
        raise ReleaseFilesError(
            ERROR_FILES_GONE.format(release=release.name, reason=f"no {PAIRS_PARQUET} listed")
        )
    folder = scratch_dir("releases", entry.sha256)
    try:
        cached = scratch_fetch(
            alias=RELEASES,
            name=f"{release.directory}/{PAIRS_PARQUET}",
            key=entry.sha256,
            verify=True,
        )
    except StoredFileError as exc:
        raise ReleaseFilesError(ERROR_FILES_GONE.format(release=release.name, reason=exc)) from exc
    target = folder / PAIRS_PARQUET
    if not target.exists():
        # A hard link where the file system allows it: the scratch cache holds the bytes once.
        try:
            target.hardlink_to(cached)
        except OSError:
            shutil.copyfile(cached, target)
    return folder


def release_image_sources(*, release: Release, pairs_dir: Path) -> dict[str, tuple[str, str]]:
    """Where each image of a release is stored, by its content key: ``sha256 → (storage alias,
    name)``. Copied images are read from the release, referenced ones from the media storage;
    ``pairs_dir`` holds the release's ``pairs.parquet`` (:func:`release_local_pairs`)."""
    import pyarrow.parquet as pq

    table = pq.read_table(pairs_dir / PAIRS_PARQUET, columns=["image_sha256", "image_path"])
    sources: dict[str, tuple[str, str]] = {}
    # Media names may begin with images/ too: only a release built with copies has its own.
    prefix = f"{IMAGES_DIR}/" if (release.options or {}).get("copy_images", True) else None
    for sha256, path in zip(
        table.column("image_sha256").to_pylist(),
        table.column("image_path").to_pylist(),
        strict=True,
    ):
        if sha256 in sources:
            continue
        if prefix is not None and path.startswith(prefix):
            sources[sha256] = (RELEASES, f"{release.directory}/{path}")
        else:
            sources[sha256] = (MEDIA, path)
    return sources


def release_download(*, release: Release, target: Path) -> list[str]:
    """Copy every file of a ready release into the local folder ``target``, each checked
    against the manifest's SHA-256; returns the paths copied (manifest last). Raises
    :class:`ReleaseFilesError`."""
    entries, raw = release_manifest(release=release)
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for entry in entries:
        parts = PurePosixPath(entry.path).parts
        if not parts or parts[0] == "/" or ".." in parts:
            reason = f"the manifest lists {entry.path!r}, outside the release"
            raise ReleaseFilesError(ERROR_FILES_GONE.format(release=release.name, reason=reason))
        try:
            storage_download(
                alias=RELEASES,
                name=f"{release.directory}/{entry.path}",
                target=target / entry.path,
                sha256=entry.sha256,
            )
        except StoredFileError as exc:
            raise ReleaseFilesError(
                ERROR_FILES_GONE.format(release=release.name, reason=exc)
            ) from exc
        copied.append(entry.path)
    (target / MANIFEST).write_bytes(raw)
    copied.append(MANIFEST)
    return copied


BUILD = "releases.build"
CANCELLED = "cancelled"
ERROR_CANCELLED = "Cancelled by {user}."
ERROR_GAVE_UP = (
    "Its worker stopped answering {runs} times in a row (killed, out of memory or the machine "
    "went away): not tried again. Retry it from the Releases page once the cause is fixed."
)
ERROR_NOT_RETRYABLE = "Only a failed release can be built again; {release} is {status}."
ERROR_NOT_CANCELLABLE = "Only a queued or building release can be cancelled; {release} is {status}."


class ReleaseCancelled(Exception):
    """The release was cancelled (or taken for dead and sent again) while this build ran."""


def release_build(
    *, release_id: int, on_progress: ProgressCallback | None = None
) -> Release | None:
    """Build a queued (or failed) release; a ready one is left as it is, and so is one that a
    live worker is building.

    The build holds the ``releases.build`` job of the release (config.jobs) with a heartbeat, so
    a build whose worker died is recognised (``releases_recover``) and a redelivered message
    rebuilds it from the start instead of taking "building" for someone else's work. Returns the
    release as it ends: ready with its files stored, or failed with ``error`` set and nothing
    stored (a predecessor that cannot be read is such a failure). Temporary files are removed,
    including those of an earlier attempt of this release that died.
    """
    what = f"the build of release {release_id}"
    with job_running(BUILD, str(release_id), release_id, what=what) as lease:
        if lease is None:  # a live worker builds it
            return Release.objects.filter(pk=release_id).first()
        return _release_build(release_id=release_id, lease=lease, on_progress=on_progress)


def _release_build(
    *, release_id: int, lease: JobLease, on_progress: ProgressCallback | None
) -> Release | None:
    # "building" too: this run holds the job, so a building release is one whose worker died.
    # A cancelled release waits for a retry, whatever message still comes for it.
    claimed = (
        Release.objects.filter(
            pk=release_id,
            status__in=[ReleaseStatus.QUEUED, ReleaseStatus.FAILED, ReleaseStatus.BUILDING],
        )
        .exclude(status=ReleaseStatus.FAILED, stage=CANCELLED)
        .update(
            status=ReleaseStatus.BUILDING,
            stage="reading labels",
            error="",
            progress_done=0,
            progress_total=0,
            # The snapshot is the data as the build reads it; a rebuild on the same day writes the
            # same bytes (files carry the date only).
            snapshot_at=timezone.now(),
        )
    )
    release = Release.objects.filter(pk=release_id).select_related("project").first()
    if release is None or not claimed:
        return release
    project = release.project
    prefix = f"{project.slug}/{release.name}"
    builds = scratch_dir("builds")
    # What an attempt of this release that died on this machine left (this run holds the job,
    # so no other attempt of it is running).
    ours = re.compile(
        rf"{re.escape(project.slug)}-{re.escape(release.name)}-(spool-)?[a-z0-9_]{{8}}"
    )
    for left in builds.iterdir():
        if ours.fullmatch(left.name):
            shutil.rmtree(left, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f"{project.slug}-{release.name}-", dir=builds))

    def progress(done: int, total: int, stage: str) -> None:
        # A cancel (or a recovery that sent the build again) took the job: stop here.
        if not job_heartbeat(lease, stage=stage, done=done, total=total):
            raise ReleaseCancelled(stage)
        if on_progress is not None:
            on_progress(done, total, stage)

    try:
        # Whatever a build that crashed part-way through storing left under this name.
        storage_delete_tree(alias=RELEASES, prefix=prefix)
        splits, counts = _build(release=release, project=project, work=work, on_progress=progress)
        _store(release=release, work=work, prefix=prefix, on_progress=progress)
        with transaction.atomic():
            ready = Release.objects.filter(pk=release.pk, status=ReleaseStatus.BUILDING).update(
                status=ReleaseStatus.READY,
                directory=prefix,
                counts=counts,
                stage="ready",
                progress_done=F("progress_total"),
                finished_at=timezone.now(),
            )
            if not ready:
                raise ReleaseCancelled("ready")
            _split_memory_write(release=release, image_splits=splits)
    except ReleaseCancelled:
        logger.warning("Release %s of %s was cancelled while it built", release.name, project.slug)
        _stored_files_forget(release=release, prefix=prefix)
    except Exception as exc:
        logger.exception("Release %s of %s failed", release.name, project.slug)
        _stored_files_forget(release=release, prefix=prefix)
        Release.objects.filter(pk=release.pk, status=ReleaseStatus.BUILDING).update(
            status=ReleaseStatus.FAILED,
            directory="",
            stage="failed",
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    release.refresh_from_db()
    return release


def _stored_files_forget(*, release: Release, prefix: str) -> None:
    try:
        storage_delete_tree(alias=RELEASES, prefix=prefix)
    except Exception:
        logger.exception("Could not delete the stored files of %s", prefix)
    ImageSplit.objects.filter(release=release).delete()


def releases_recover() -> list[int]:
    """Builds whose worker died (no heartbeat for the job's stale time): sent again, or failed
    with ERROR_GAVE_UP after CONCORD_JOB_MAX_RUNS attempts; what beat runs every minute.
    Returns the release ids it acted on."""

    def failed(release_id: int, error: str) -> None:
        Release.objects.filter(pk=release_id, status=ReleaseStatus.BUILDING).update(
            status=ReleaseStatus.FAILED, stage="failed", error=error, finished_at=timezone.now()
        )

    def resent(release_id: int) -> None:
        Release.objects.filter(pk=release_id, status=ReleaseStatus.BUILDING).update(
            stage="sent again: its worker stopped answering"
        )

    return jobs_recover(
        BUILD,
        what=lambda release_id: f"the build of release {release_id}",
        gave_up=ERROR_GAVE_UP,
        on_give_up=failed,
        on_resend=resent,
    )


def release_cancel(*, release: Release, by: AbstractBaseUser) -> Release:
    """Stop a queued or building release: it fails with ERROR_CANCELLED at once, and a build
    running somewhere stops at its next progress step and deletes what it stored. Raises
    ``ValueError`` for any other status."""
    error = ERROR_CANCELLED.format(user=by.get_username())
    cancelled = Release.objects.filter(
        pk=release.pk, status__in=[ReleaseStatus.QUEUED, ReleaseStatus.BUILDING]
    ).update(status=ReleaseStatus.FAILED, stage=CANCELLED, error=error, finished_at=timezone.now())
    if not cancelled:
        release.refresh_from_db()
        raise ValueError(
            ERROR_NOT_CANCELLABLE.format(
                release=release.name, status=release.get_status_display().lower()
            )
        )
    job_cancel(BUILD, str(release.pk), error=error)
    release.refresh_from_db()
    return release


def release_retry(*, release: Release) -> Release:
    """Queue a failed release's build again (after commit). Raises ``ValueError`` otherwise."""
    queued = Release.objects.filter(pk=release.pk, status=ReleaseStatus.FAILED).update(
        status=ReleaseStatus.QUEUED, stage="queued", error="", finished_at=None
    )
    release.refresh_from_db()
    if not queued:
        raise ValueError(
            ERROR_NOT_RETRYABLE.format(
                release=release.name, status=release.get_status_display().lower()
            )
        )
    # A fresh count of attempts: the give-up rule counts deaths since the last retry.
    JobLease.objects.filter(name=BUILD, key=str(release.pk), heartbeat_at=None).update(runs=0)
    release_enqueue(release_id=release.pk)
    return release


def _store(
    *, release: Release, work: Path, prefix: str, on_progress: ProgressCallback | None
) -> None:
    """Store every file of the built folder under ``prefix``, the manifest last: a release
    whose manifest is stored has all its files."""
    names = folder_files(work)
    total = len(names) + 1

    def upload(relative: str) -> None:
        storage_upload(alias=RELEASES, name=f"{prefix}/{relative}", source=work / relative)

    # Object stores answer each request in tens of milliseconds: copied images go up in
    # parallel. Any failure propagates, and the caller deletes what was stored.
    with ThreadPoolExecutor(
        max_workers=1 if storage_is_local(RELEASES) else UPLOAD_THREADS
    ) as pool:
        for done, _ in enumerate(pool.map(upload, names), start=1):
            if done % 50 == 0:
                _progress(release, done=done, total=total, stage="storing files", cb=on_progress)
    storage_upload(alias=RELEASES, name=f"{prefix}/{MANIFEST}", source=work / MANIFEST)
    _progress(release, done=total, total=total, stage="storing files", cb=on_progress)


# --- retention ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneOutcome:
    """One release whose files were deleted: its project, name and how many files went."""

    project: str
    release: str
    files: int


def release_pin(*, release: Release, pinned: bool) -> Release:
    """Pin (keep forever) or unpin a release. Raises ``ValueError`` for a pruned release, whose
    files are already gone."""
    if pinned and release.status == ReleaseStatus.PRUNED:
        raise ValueError(ERROR_PIN_PRUNED.format(release=release.name))
    Release.objects.filter(pk=release.pk).update(pinned=pinned)
    release.refresh_from_db()
    return release


def release_prune(*, release: Release, reason: str = PRUNED_BY_HAND) -> PruneOutcome:
    """Delete a ready, unpinned release's stored files and mark it pruned (its row, counts and
    diff stay; its image-split memory goes, since only the newest release's is ever read).
    Raises ``ValueError`` for a pinned release or one that is not ready."""
    if release.pinned:
        raise ValueError(ERROR_PRUNE_PINNED.format(release=release.name))
    if release.status != ReleaseStatus.READY:
        raise ValueError(
            ERROR_PRUNE_STATUS.format(
                release=release.name, status=release.get_status_display().lower()
            )
        )
    # Marked first, so no reader is handed files that are being deleted; the folder name is
    # cleared only once they are gone, so a prune cut short is finished by the next run.
    with transaction.atomic():
        marked = Release.objects.filter(
            pk=release.pk, status=ReleaseStatus.READY, pinned=False
        ).update(status=ReleaseStatus.PRUNED, pruned_at=timezone.now(), pruned_reason=reason)
        if not marked:
            raise ValueError(ERROR_PRUNE_PINNED.format(release=release.name))
        ImageSplit.objects.filter(release=release).delete()
    files = _pruned_files_delete(release=release)
    release.refresh_from_db()
    return PruneOutcome(project=release.project.slug, release=release.name, files=files)


def _pruned_files_delete(*, release: Release) -> int:
    files = 0
    if release.directory:
        files = storage_delete_tree(alias=RELEASES, prefix=release.directory)
    Release.objects.filter(pk=release.pk, status=ReleaseStatus.PRUNED).update(directory="")
    return files


def releases_to_prune(*, project: Project, keep: int) -> list[Release]:
    """The ready releases of ``project`` beyond its newest ``keep`` ready ones, unpinned;
    none when ``keep`` is 0 (keep everything)."""
    if keep <= 0:
        return []
    ready = Release.objects.filter(project=project, status=ReleaseStatus.READY).order_by("-version")
    return [release for release in ready[keep:] if not release.pinned]


def releases_prune(
    *, project: Project | None = None, keep: int | None = None
) -> list[PruneOutcome]:
    """Apply retention to one project (or every project): keep the newest ``keep`` ready
    releases (default ``CONCORD_RELEASES_KEEP``) and every pinned one, prune the rest."""
    keep = settings.CONCORD_RELEASES_KEEP if keep is None else keep
    projects = [project] if project is not None else list(Project.objects.order_by("pk"))
    outcomes = []
    reason = PRUNED_BY_RETENTION.format(keep=keep)
    for target in projects:
        # Prunes cut short (a worker stopped while deleting): their remaining files go now.
        unfinished = Release.objects.filter(project=target, status=ReleaseStatus.PRUNED)
        for release in unfinished.exclude(directory=""):
            files = _pruned_files_delete(release=release)
            outcomes.append(PruneOutcome(project=target.slug, release=release.name, files=files))
        for release in releases_to_prune(project=target, keep=keep):
            try:
                outcomes.append(release_prune(release=release, reason=reason))
            except ValueError:
                continue  # pinned or rebuilt since it was listed
            logger.info("Pruned %s %s (%s)", target.slug, release.name, reason)
    return outcomes


# --- the build ----------------------------------------------------------------------------


@dataclass
class _Snapshot:
    """What the snapshot transaction read: splits, stats and the spooled rows."""

    assignment: Any
    canonical_of: dict[int, int]
    previous: Release | None
    pruned_before: Release | None
    spools: dict[str, Path]
    counts: dict[str, LabelCounts]
    rows: int
    collection: CollectionStats
    agreement: AgreementStats
    preprocessing: PreprocessingStats


def _build(
    *, release: Release, project: Project, work: Path, on_progress: ProgressCallback | None
) -> tuple[Mapping[int, str], dict[str, Any]]:
    options = ReleaseOptions(**{**release.options, "formats": tuple(release.options["formats"])})
    # Named for the release, so a rebuild after a crash finds and removes what this one left.
    spool_dir = Path(
        tempfile.mkdtemp(prefix=f"{project.slug}-{release.name}-spool-", dir=scratch_dir("builds"))
    )
    try:
        snapshot = _snapshot_read(release=release, project=project, spool_dir=spool_dir)
        _progress(release, done=0, total=snapshot.rows, stage="writing files", cb=on_progress)
        train = snapshot.counts.get("train", LabelCounts())
        plan = plan_balance(
            train=train,
            target_ratio=options.balance_ratio,
            method=options.balance_method,
            seed=release.project_id,
        )
        tally = BalanceTally()
        composition = CompositionTally()

        def read_image(row: Mapping[str, Any]) -> bytes:
            return release_image_read(
                directory=work, path=str(row["image_path"]), copied=options.copy_images
            )

        sinks = release_sinks(
            directory=work,
            formats=options.formats,
            read_image=read_image,
            coco_info={
                "description": f"{project.name} {release.name}",
                "version": release.name,
                "year": release.snapshot_at.year,
            },
            max_samples=options.shard_samples,
        )
        rows = _replay(
            snapshot=snapshot,
            work=work,
            copy_images=options.copy_images,
            release=release,
            cb=on_progress,
        )
        export_rows(
            rows=apply_balance(rows=rows, plan=plan, tally=tally), sinks=[*sinks, composition]
        )
        _progress(release, done=snapshot.rows, total=snapshot.rows, stage="diff", cb=on_progress)
        previous_parquet = None
        if snapshot.previous is not None:
            previous_parquet = _previous_pairs(
                release=release, previous=snapshot.previous, target=spool_dir / "previous"
            )
        old = read_pair_states(path=previous_parquet) if previous_parquet else ()
        diff = write_diff(
            path=work / DIFF_FILE, old=old, new=read_pair_states(path=work / PAIRS_PARQUET)
        )
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    balance = tally.summary(plan=plan)
    comp = composition.composition()
    previous_name = snapshot.previous.name if snapshot.previous is not None else None
    write_datasheet(
        directory=work,
        stats=DatasheetStats(
            project=project.name,
            version=release.name,
            composition=comp,
            collection=snapshot.collection,
            agreement=snapshot.agreement,
            preprocessing=snapshot.preprocessing,
            split_ratios=(project.split_train, project.split_val, project.split_test),
            motivation=project.description,
            created=release.snapshot_at.date().isoformat(),
            previous_version=previous_name,
            pruned_before=snapshot.pruned_before.name if snapshot.pruned_before else None,
            balance=balance,
            diff=diff if previous_name else None,
            split_moves=len(snapshot.assignment.moves),
            images_included=options.copy_images,
            formats=options.formats,
        ),
    )
    if options.copy_images:
        images = "copied"
    elif "webdataset" in options.formats:
        images = "in webdataset shards"
    else:
        images = "referenced"
    _progress(release, done=snapshot.rows, total=snapshot.rows, stage="manifest", cb=on_progress)
    write_manifest(
        directory=work,
        release={
            "project": project.slug,
            "version": release.name,
            "previous_version": previous_name,
            "snapshot": release.snapshot_at.date().isoformat(),
            "formats": list(options.formats),
            "images": images,
        },
    )
    counts = {
        "pairs": comp.total_pairs,
        "images": sum(comp.images.values()),
        "splits": {
            split: {
                "pairs": comp.split_pairs(split),
                "images": comp.images.get(split, 0),
                "positives": balance.natural.get(split, LabelCounts()).positives,
                "negatives": balance.natural.get(split, LabelCounts()).negatives,
            }
            for split in SPLITS
        },
        "label_sources": _by_source(comp.label_sources),
        "moves": len(snapshot.assignment.moves),
        "merged_clusters": len(snapshot.assignment.merged_clusters),
        "previous_version": previous_name,
        "diff": asdict(diff) if previous_name else None,
        "balance": balance.describe(),
    }
    return snapshot.assignment.image_splits, counts


def release_image_read(*, directory: Path, path: str, copied: bool) -> bytes:
    """An image's bytes for a WebDataset sample: the release's copy, or the stored file."""
    if copied:
        return (directory / path).read_bytes()
    with storage(MEDIA).open(path, "rb") as fh:
        return fh.read()


def _previous_pairs(*, release: Release, previous: Release, target: Path) -> Path:
    """The previous release's ``pairs.parquet``, fetched from storage and checked against its
    manifest. Raises ``ReleaseFilesError`` with :data:`ERROR_PREDECESSOR`: a diff against a
    predecessor that cannot be read would call every pair added."""
    try:
        entries, _raw = release_manifest(release=previous)
        entry = next((e for e in entries if e.path == PAIRS_PARQUET), None)
        if entry is None:
            raise ReleaseFilesError(f"its manifest lists no {PAIRS_PARQUET}")
        return storage_download(
            alias=RELEASES,
            name=f"{previous.directory}/{PAIRS_PARQUET}",
            target=target / PAIRS_PARQUET,
            sha256=entry.sha256,
        )
    except (ReleaseFilesError, StoredFileError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, StoredFileError) else exc
        raise ReleaseFilesError(
            ERROR_PREDECESSOR.format(
                previous=previous.name,
                reason=cause,
                slug=release.project.slug,
            )
        ) from exc


def _snapshot_read(*, release: Release, project: Project, spool_dir: Path) -> _Snapshot:
    with transaction.atomic():
        _repeatable_read()
        previous = (
            Release.objects.filter(
                project=project, status=ReleaseStatus.READY, version__lt=release.version
            )
            .order_by("-version")
            .first()
        )
        clusters, canonical_of = _clusters(project=project)
        remembered: dict[int, str] = {}
        if previous is not None:
            remembered = dict(
                ImageSplit.objects.filter(release=previous).values_list("image_id", "split")
            )
        if abs(project.split_train + project.split_val + project.split_test - 1) > 1e-9:
            raise ValueError(ERROR_SPLIT_RATIOS)
        assignment = assign_splits(
            clusters=clusters,
            previous=remembered,
            salt=project.split_salt,
            ratios=(project.split_train, project.split_val, project.split_test),
        )
        spools, counts, rows = _spool_pairs(
            project=project, image_splits=assignment.image_splits, spool_dir=spool_dir
        )
        eligible = _eligible_pairs(project=project).count()
        return _Snapshot(
            assignment=assignment,
            canonical_of=canonical_of,
            previous=previous,
            pruned_before=None
            if previous is not None
            else Release.objects.filter(
                project=project, status=ReleaseStatus.PRUNED, version__lt=release.version
            )
            .order_by("-version")
            .first(),
            spools=spools,
            counts=counts,
            rows=rows,
            collection=_collection_stats(project=project),
            agreement=_agreement_stats(project=project),
            preprocessing=_preprocessing_stats(project=project, low_agreement=eligible - rows),
        )


def _repeatable_read() -> None:
    """One snapshot for every statement of the outermost transaction, on PostgreSQL.

    Must be the transaction's first statement. Inside an enclosing transaction (the tests'),
    the snapshot is already that transaction's; a SQLite transaction in WAL mode reads one
    snapshot by nature.
    """
    if connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def _clusters(*, project: Project) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Every image as a cluster member: canonical id → members, and member → canonical id."""
    canonical_of = dict(
        ClusterMember.objects.filter(cluster__project=project).values_list(
            "image_id", "cluster__canonical_id"
        )
    )
    clusters: dict[int, list[int]] = {}
    for image_id in (
        Image.objects.filter(project=project).order_by("pk").values_list("pk", flat=True)
    ):
        canonical = canonical_of.get(image_id, image_id)
        clusters.setdefault(canonical, []).append(image_id)
    return clusters, canonical_of


def _eligible_pairs(*, project: Project):
    return (
        Pair.objects.filter(image__project=project, excluded_from_releases=False)
        .exclude(images_held_back(image="image"))
        .exclude(captions_held_back(caption="caption"))
    )


def _labelled_pairs(*, project: Project):
    """The pairs that go into the release, with their label, source, confidence, judgments."""
    trusted = [str(s) for s in project.trusted_sources or []]
    gold = Subquery(
        Task.objects.filter(pair=OuterRef("pk"), is_gold=True).values("gold_answer")[:1]
    )
    not_disputed = Q(item_label__isnull=True) | ~Q(item_label__status=ItemStatus.DISPUTED)
    adjudicated = Q(item_label__adjudicated_label__isnull=False)
    agreed = Q(item_label__status=ItemStatus.AGREED, item_label__label__isnull=False)
    imported = Q(kind=PairKind.POSITIVE, caption__source__in=trusted) & not_disputed
    constructed = Q(kind=PairKind.RANDOM_NEGATIVE) & not_disputed
    return (
        _eligible_pairs(project=project)
        .annotate(gold_answer=gold)
        .annotate(
            release_source=Case(
                When(adjudicated, then=Value("adjudicated")),
                When(gold_answer__in=[Answer.MATCH, Answer.NO_MATCH], then=Value("gold")),
                When(agreed, then=Value("crowd")),
                When(imported, then=Value("import")),
                When(constructed, then=Value("construction")),
                default=Value(""),
            ),
            release_label=Case(
                When(adjudicated, then=F("item_label__adjudicated_label")),
                When(gold_answer=Answer.MATCH, then=Value(1)),
                When(gold_answer=Answer.NO_MATCH, then=Value(0)),
                When(agreed, then=F("item_label__label")),
                When(imported, then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            ),
            release_confidence=Case(
                When(adjudicated, then=Value(1.0)),
                When(gold_answer__in=[Answer.MATCH, Answer.NO_MATCH], then=Value(1.0)),
                When(agreed, then=Coalesce(F("item_label__confidence"), Value(1.0))),
                default=Value(1.0),
                output_field=FloatField(),
            ),
            release_judgments=Coalesce(F("item_label__judgments"), Value(0)),
        )
        .exclude(release_source="")
    )


def _spool_pairs(
    *, project: Project, image_splits: Mapping[int, str], spool_dir: Path
) -> tuple[dict[str, Path], dict[str, LabelCounts], int]:
    """One chunked pass over the pairs into a spool file per split; label counts per split."""
    paths = {split: spool_dir / f"{split}.marshal" for split in SPLITS}
    labels = {split: [0, 0] for split in SPLITS}
    rows = 0
    with contextlib.ExitStack() as stack:
        files = {
            split: stack.enter_context(open(path, "wb", buffering=1 << 20))
            for split, path in paths.items()
        }
        queryset = _labelled_pairs(project=project).order_by("image_id", "pk")
        dump = marshal.dump
        for values in queryset.values_list(*_ROW_FIELDS).iterator(chunk_size=CHUNK_SIZE):
            split = image_splits[values[1]]
            dump(values, files[split])
            labels[split][values[5]] += 1
            rows += 1
    counts = {s: LabelCounts(positives=c[1], negatives=c[0]) for s, c in labels.items()}
    return paths, counts, rows


def _replay(
    *,
    snapshot: _Snapshot,
    work: Path,
    copy_images: bool,
    release: Release,
    cb: ProgressCallback | None,
) -> Iterator[dict[str, Any]]:
    """The spooled rows as release rows, train then val then test; copies images as they come."""
    done = 0
    canonical_of = snapshot.canonical_of
    for split in SPLITS:
        last_image = None
        image_path = ""
        with open(snapshot.spools[split], "rb", buffering=1 << 20) as fh:
            while True:
                try:
                    values = marshal.load(fh)
                except EOFError:
                    break
                (pair_id, image_id, caption_id, caption, kind, label, source, confidence,
                 judgments, sha256, file_name, fmt, width, height, licence, licence_url,
                 source_url, original_name) = values  # fmt: skip
                if image_id != last_image:
                    last_image = image_id
                    if copy_images:
                        image_path = release_image_path(
                            sha256=sha256, extension=_EXTENSIONS.get(fmt, "jpg")
                        )
                        _image_copy(name=file_name, target=work / image_path)
                    else:
                        image_path = file_name
                yield {
                    "pair_id": pair_id,
                    "image_id": image_id,
                    "caption_id": caption_id,
                    "image_path": image_path,
                    "image_sha256": sha256,
                    "caption": caption,
                    "kind": kind,
                    "label": label,
                    "label_source": source,
                    "confidence": confidence,
                    "n_judgments": judgments,
                    "split": split,
                    "cluster_id": canonical_of.get(image_id, image_id),
                    "weight": 1.0,
                    "license": licence,
                    "width": width,
                    "height": height,
                    "license_url": licence_url,
                    "source_url": source_url,
                    "original_name": original_name,
                }
                done += 1
                if done % PROGRESS_EVERY == 0:
                    _progress(release, done=done, total=snapshot.rows, stage="writing files", cb=cb)


def _image_copy(*, name: str, target: Path) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with storage(MEDIA).open(name, "rb") as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def _progress(
    release: Release, *, done: int, total: int, stage: str, cb: ProgressCallback | None
) -> None:
    # Only while building: a cancel (failed) is not overwritten by the build it stops.
    Release.objects.filter(pk=release.pk, status=ReleaseStatus.BUILDING).update(
        progress_done=done, progress_total=total, stage=stage
    )
    if cb is not None:
        cb(done, total, stage)


def _split_memory_write(*, release: Release, image_splits: Mapping[int, str]) -> None:
    ImageSplit.objects.filter(release=release).delete()
    batch: list[ImageSplit] = []
    for image_id, split in sorted(image_splits.items()):
        batch.append(ImageSplit(release=release, image_id=image_id, split=split))
        if len(batch) >= _SPLIT_MEMORY_BATCH:
            ImageSplit.objects.bulk_create(batch)
            batch = []
    if batch:
        ImageSplit.objects.bulk_create(batch)


def _by_source(label_sources: Mapping[tuple[str, str], int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (_split, source), n in label_sources.items():
        totals[source] = totals.get(source, 0) + n
    return dict(sorted(totals.items()))


def _collection_stats(*, project: Project) -> CollectionStats:
    judgments = Judgment.objects.filter(task__project=project)
    figures = judgments.aggregate(
        gold_accuracy=Avg(
            Case(
                When(gold_correct=True, then=Value(1.0)),
                When(gold_correct=False, then=Value(0.0)),
                output_field=FloatField(),
            )
        )
    )
    return CollectionStats(
        annotators=judgments.values("annotator_id").distinct().count(),
        judgments=judgments.count(),
        judgments_per_item=project.judgments_per_item,
        gold_rate=project.gold_rate,
        challenge_rate=project.challenge_rate,
        gold_accuracy=figures["gold_accuracy"],
        trusted_sources=tuple(str(s) for s in project.trusted_sources or []),
    )


def _agreement_stats(*, project: Project) -> AgreementStats:
    snapshot = snapshot_latest(project=project)
    figures: dict[str, float] = {}
    if snapshot is not None:
        for name, value in (
            ("Krippendorff's α", snapshot.alpha),
            ("Fleiss' κ", snapshot.fleiss_kappa),
            ("percent agreement", snapshot.percent_agreement),
        ):
            if value is not None:
                figures[name] = value
    return AgreementStats(
        aggregation="Dawid–Skene (majority vote kept beside it); an item counts as agreed "
        f"when its agreement reaches {project.agreement_threshold:g}",
        figures=figures,
        min_confidence=project.agreement_threshold,
    )


def _preprocessing_stats(*, project: Project, low_agreement: int) -> PreprocessingStats:
    duplicates = (
        ClusterMember.objects.filter(cluster__project=project)
        .exclude(cluster__canonical=F("image"))
        .count()
    )
    flagged_images = (
        ImageFlag.objects.filter(image__project=project, overridden_at__isnull=True)
        .values("image_id")
        .distinct()
        .count()
    )
    flagged_captions = (
        CaptionFlag.objects.filter(caption__image__project=project, overridden_at__isnull=True)
        .values("caption_id")
        .distinct()
        .count()
    )
    return PreprocessingStats(
        phash_threshold=project.near_duplicate_threshold,
        duplicates_excluded=duplicates,
        flagged_excluded=flagged_images + flagged_captions,
        low_agreement_excluded=max(0, low_agreement),
        filters=(
            "Pairs without a usable label are left out: pending or disputed items, "
            "unjudged hard and text-edit negatives, and positives from untrusted sources "
            "that no one judged.",
        ),
    )
