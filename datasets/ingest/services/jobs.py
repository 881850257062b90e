"""Import jobs: uploads, zips, manifests and COCO files, stored first and then run row by row.

A request does bounded work: it streams the files into the default storage (never a local path:
web and workers may be different machines), writes an ImportJob and hands it to a Celery task by
name. The task (or the terminal command, for folders on its own disk) runs ``import_job_run``:

* every input row (an uploaded file, a zip member, a manifest line, a COCO image or annotation)
  ends in exactly one ImportRow, in input order: added, already present, merged into an image
  with the same bytes (its captions go there, its provenance is kept as an ImageSource), or
  refused with a reason;
* a row is atomic: its image, caption, pair, extra source and ImportRow are written in one
  savepoint, and one row failing (even in the database) never costs another;
* rows are committed in small batches together with the job's counters and heartbeat, so the
  counters always add up to the rows written, and a run that dies (``kill -9``) is resumed by
  running the job again: committed rows are skipped (unique per job and position), the rest are
  done once. Image files are named by content, so a file a dead run left without its row is
  found and replaced rather than doubled;
* a job that ends, done or failed, deletes its uploaded inputs from the storage (a finished job
  is never run again, so they would only take space); an unfinished one keeps them to resume.
"""

import hashlib
import logging
import os
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.celery import enqueue_on_commit
from config.jobs import job_alive, job_cancel, job_heartbeat, job_running, jobs_recover
from datasets.ingest.archives import ArchiveRejected, MemberRefused, list_archive, read_member
from datasets.ingest.captions import CaptionError, clean_caption
from datasets.ingest.images import (
    IMAGE_TOO_LARGE,
    CheckedImage,
    ImageRejected,
    check_image,
    content_sha256,
    declared_pixels,
)
from datasets.ingest.services.imports import caption_import_key
from datasets.ingest.services.uploads import (
    captions_check_enqueue,
    cleaning_enqueue,
    image_file_discard,
    image_file_save,
    thumbnails_enqueue,
)
from datasets.ingest.sources import (
    ENCODINGS,
    ParsedSource,
    SourceError,
    SourceRow,
    display_text,
    name_problem,
    parse_coco,
    parse_manifest,
)
from datasets.models import (
    Caption,
    Image,
    ImageSource,
    ImportJob,
    ImportKind,
    ImportRow,
    ImportStatus,
    JobLease,
    Pair,
    PairKind,
    Project,
    RowOutcome,
    Source,
)

logger = logging.getLogger(__name__)

RUN_TASK = "ingest.run_import"

IMAGE_FILE_MISSING = "image file not found: {name}"
IMAGE_NOT_UPLOADED = "image file not among the uploaded images: {name}"
IMAGE_NAME_AMBIGUOUS = "{count} uploaded files are named {name} ({paths}): give the path."
IMAGE_PATH_UNSAFE = "image path leaves the images folder: {name}"
IMAGE_FILE_TOO_LARGE = "{name}: the file is {size_mb:.1f} MiB; the limit is {limit_mb:.3g} MiB."
IMAGE_OF_ENTRY_REFUSED = "its image (id {ref}) was refused: {reason}"
IMAGE_ID_UNKNOWN = "refers to unknown image id {ref}."
ALREADY_PRESENT = "Already in this project (same file content)."
ALREADY_IMPORTED = "Already imported."
MERGED_INTO = (
    "Same bytes as image {image_id} ({name}): its captions go there, and this file is kept "
    "as another source of it."
)
# A row whose image an earlier row made (the same URL twice in a collection), when "added" means
# "this row made the image" (import_rows_write): what it brought went to that image.
SAME_FILE_ADDED_TO = "Already in this project as image {image_id}: its caption went there."
ROW_DATABASE_REFUSED = "The database refused this row: {detail}"
ROW_INTERNAL_ERROR = "Could not be imported (an internal error, logged for the administrators)."
JOB_INTERNAL_ERROR = "The job stopped on an internal error (logged for the administrators)."
JOB_TERMINAL_ONLY = "Started from the terminal: only `manage.py {command}` can run it."
INPUT_TOO_LARGE = (
    "{name} is {size_mb:.0f} MiB; the limit for a manifest or COCO file is {limit_mb:.3g} MiB."
)
NO_ROWS = {
    ImportKind.UPLOAD: "0 rows: the upload holds no file to read (an empty archive, or only "
    "folders and system files).",
    ImportKind.MANIFEST: "0 rows: the manifest has its header but no data line.",
    ImportKind.COCO: "0 rows: the file's 'images' and 'annotations' lists are empty.",
}
UNKNOWN_ENCODING = "Unknown encoding '{encoding}'; one of {known}."
NO_MANIFEST = "Choose the manifest or COCO file, or a zip that holds it with the images."
SKIPPED_CLUTTER = "{archive}: skipped {count} system file(s) (__MACOSX, .DS_Store, Thumbs.db)."

# Rows per batch: a batch is one transaction (the write lock on SQLite), so it stays short.
BATCH_ROWS = 50
BATCH_SECONDS = 1.0
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_WHERE_MAX, _NAME_MAX = 300, 500
_SAFE_SUFFIX_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")


class InputRefused(ValueError):
    """An upload or import the request refuses before any job exists (400, with the reason)."""


# ------------------------------------------------------------------------------------------------
# Creating jobs: what a request or a command does, bounded by the size of what it was sent.
# ------------------------------------------------------------------------------------------------


def upload_job_create(
    *,
    project: Project,
    files: Sequence[File],
    source: str,
    created_by: AbstractBaseUser | None,
) -> ImportJob:
    """Store uploaded images and zips and queue the job that adds them.

    ``files`` are Django files (an upload streamed to a temporary file, or any File); each is
    copied into the default storage in chunks. An upload whose checking is bounded small is run
    at once, so the caller gets its results: at most ``CONCORD_UPLOAD_INLINE_FILES`` plain
    images (no zip) of at most ``CONCORD_UPLOAD_INLINE_BYTES`` together, whose headers declare
    at most ``CONCORD_UPLOAD_INLINE_PIXELS`` pixels together (decoding and re-encoding cost
    memory and time by pixels, not bytes: a 600 KB PNG may hold 49 megapixels). Anything else
    is enqueued as ``ingest.run_import``. Raises InputRefused when no file was sent.
    """
    if not files:
        raise InputRefused("Choose one or more files.")
    # Decided before storing: storing may move an upload's temporary file away.
    inline = upload_is_inline(files)
    job = _job_create(
        project=project,
        kind=ImportKind.UPLOAD,
        source=source,
        created_by=created_by,
        inputs=[("files", upload) for upload in files],
    )
    if inline:
        return import_job_run(job_id=job.pk)
    import_job_enqueue(job=job)
    return job


def upload_is_inline(files: Sequence[File]) -> bool:
    """Whether checking these uploads is small enough to do inside the request (see
    upload_job_create). Reads at most each file's first bytes and its image header."""
    if len(files) > settings.CONCORD_UPLOAD_INLINE_FILES:
        return False
    if sum(upload.size or 0 for upload in files) > settings.CONCORD_UPLOAD_INLINE_BYTES:
        return False
    if any(_looks_like_zip(upload) for upload in files):
        return False
    pixels = sum(declared_pixels(upload) or 0 for upload in files)
    return pixels <= settings.CONCORD_UPLOAD_INLINE_PIXELS


def import_job_create(
    *,
    project: Project,
    kind: str,
    manifest: File,
    images: Sequence[File],
    created_by: AbstractBaseUser | None,
    encoding: str = "auto",
) -> ImportJob:
    """Store a manifest or COCO file with the images it names (files, or zips of them) and queue
    the job that imports them. ``manifest`` may be None when a zip among ``images`` holds it
    (the one .csv/.tsv/.jsonl/.ndjson file, or .json for COCO, in it). ``encoding`` is the
    text's encoding, one of sources.ENCODINGS ("auto" detects it). Raises InputRefused for an
    unknown kind or encoding, an oversized manifest, or no manifest (none sent, and no zip among
    ``images`` lists one)."""
    if kind not in (ImportKind.MANIFEST, ImportKind.COCO):
        raise InputRefused(f"Unknown import kind '{kind}'.")
    _check_encoding(encoding)
    if manifest is None and not any(_zip_holds_manifest(upload, kind=kind) for upload in images):
        # Known now, from the zips' directories (bounded): no job is made only to fail.
        raise InputRefused(NO_MANIFEST)
    if manifest is not None:
        _check_source_size(name=manifest.name or "", size=manifest.size or 0)
    given = [("manifest", manifest)] if manifest is not None else []
    job = _job_create(
        project=project,
        kind=kind,
        source=Source.MANIFEST if kind == ImportKind.MANIFEST else Source.COCO,
        created_by=created_by,
        inputs=[*given, *[("images", upload) for upload in images]],
        options=_encoding_option(encoding),
    )
    import_job_enqueue(job=job)
    return job


def terminal_import_create(
    *, project: Project, kind: str, source_file: Path, images_dir: Path, encoding: str = "auto"
) -> ImportJob:
    """A job for import_coco/import_manifest: the manifest goes to the storage like any input;
    the images stay in ``images_dir`` on this machine, so only this process runs the job.
    ``encoding`` as for import_job_create."""
    _check_encoding(encoding)
    _check_source_size(name=source_file.name, size=source_file.stat().st_size)
    with source_file.open("rb") as handle:
        return _job_create(
            project=project,
            kind=kind,
            source=Source.MANIFEST if kind == ImportKind.MANIFEST else Source.COCO,
            created_by=None,
            inputs=[("manifest", File(handle, name=source_file.name))],
            options={"images_dir": str(images_dir.resolve()), **_encoding_option(encoding)},
        )


def import_job_enqueue(*, job: ImportJob) -> None:
    """Hand the job to a worker once its row is committed (a broker away leaves it queued)."""
    enqueue_on_commit(RUN_TASK, job.pk, what=f"import job {job.pk}")


@transaction.atomic
def _job_create(
    *,
    project: Project,
    kind: str,
    source: str,
    created_by: AbstractBaseUser | None,
    inputs: list[tuple[str, File]],
    options: dict | None = None,
) -> ImportJob:
    job = ImportJob.objects.create(
        project=project, kind=kind, source=source, created_by=created_by, options=options or {}
    )
    stored: list[dict] = []
    try:
        for index, (role, upload) in enumerate(inputs):
            # The name as sent: Django cuts an uploaded file's name to 255 characters silently
            # (config.uploads keeps the full one), and the row refuses one too long to store.
            original = getattr(upload, "full_name", None) or upload.name or f"file-{index + 1}"
            # The storage name carries no part of the uploaded name but a plain suffix.
            name = default_storage.save(
                f"imports/{project.pk}/{job.pk}/{index:05d}{_suffix(original)}", upload
            )
            stored.append(
                {
                    "role": role,
                    "name": display_text(os.path.basename(original), limit=_NAME_MAX),
                    "storage": name,
                    "size": upload.size or 0,
                }
            )
    except BaseException:
        for item in stored:
            default_storage.delete(item["storage"])
        raise
    job.inputs = stored
    job.save(update_fields=["inputs"])
    return job


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise InputRefused(UNKNOWN_ENCODING.format(encoding=encoding, known=", ".join(ENCODINGS)))


def _encoding_option(encoding: str) -> dict:
    return {} if encoding == "auto" else {"encoding": encoding}


def _check_source_size(*, name: str, size: int) -> None:
    limit = settings.CONCORD_IMPORT_MAX_BYTES
    if size > limit:
        raise InputRefused(
            INPUT_TOO_LARGE.format(
                name=display_text(name, limit=80), size_mb=size / 2**20, limit_mb=limit / 2**20
            )
        )


def _suffix(name: str) -> str:
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return suffix if 1 < len(suffix) <= 8 and set(suffix[1:]) <= _SAFE_SUFFIX_CHARS else ""


def _manifest_suffixes(kind: str) -> tuple[str, ...]:
    return (".json",) if kind == ImportKind.COCO else (".csv", ".tsv", ".jsonl", ".ndjson")


def _zip_holds_manifest(upload: File, *, kind: str) -> bool:
    """Whether an uploaded file is a zip whose directory lists a manifest (or COCO file)."""
    if not _looks_like_zip(upload):
        return False
    try:
        listing = list_archive(
            upload,
            max_files=settings.CONCORD_ZIP_MAX_FILES,
            max_total_bytes=settings.CONCORD_ZIP_MAX_BYTES,
        )
    except ArchiveRejected:
        return False
    finally:
        upload.seek(0)
    suffixes = _manifest_suffixes(kind)
    return any(
        member.name.lower().endswith(suffixes) and not member.name_error
        for member in listing.members
    )


def _looks_like_zip(upload: File) -> bool:
    if (upload.name or "").lower().endswith(".zip"):
        return True
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    return head in _ZIP_MAGIC


# ------------------------------------------------------------------------------------------------
# Running a job.
# ------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One input row, ready to process: what it names and how to get its image's bytes."""

    position: int
    where: str
    name: str
    error: str = ""
    caption: str | None = None
    source: str = ""
    original_name: str = ""
    source_url: str = ""
    license_name: str = ""
    license_url: str = ""
    load: Callable[[], bytes] | None = None
    file_key: str = ""  # two rows naming the same file share one read
    key: str = ""  # a COCO image entry's id
    ref: str = ""  # the COCO image id an annotation refers to
    # The image checks already run on these bytes (in a fetch thread, see RowInput.checked).
    checked: CheckedImage | None = None


@dataclass
class _Plan:
    items: list[_Item]
    notes: list[str]


@dataclass
class _Stored:
    """A checked image whose file is in the storage but whose row may not exist yet."""

    sha256: str
    file: str
    size: int
    checked: CheckedImage  # content dropped once stored (see _store)


@dataclass
class _Prepared:
    item: _Item
    refusal: str = ""
    text: str = ""  # the normalised caption
    sha256: str = ""  # of the row's image, when it has one


@dataclass
class _RunState:
    """What a run remembers between rows; rebuilt from the committed rows when resuming."""

    file_sha: dict[str, str | Exception] = field(default_factory=dict)  # file key -> sha or refusal
    image_by_sha: dict[str, int] = field(default_factory=dict)
    created_here: set[int] = field(default_factory=set)
    provenances: dict[int, set[tuple]] = field(default_factory=dict)
    primary: dict[int, tuple] = field(default_factory=dict)
    occurrences: Counter = field(default_factory=Counter)  # (image id, text) -> rows so far
    coco_images: dict[str, int | str] = field(
        default_factory=dict
    )  # COCO id -> image id or why not
    # Contents a batch looked up and found in no image of the project (import_rows_write).
    absent: set[str] = field(default_factory=set)
    # A row is "added" only when it made its image (collections: added == images added); a row
    # that only brings a caption to an image of the same file is then "merged" into it.
    added_makes_image: bool = False
    # What the row being written changed here, undone if its savepoint rolls back.
    undo: list[Callable[[], None]] = field(default_factory=list)


def import_job_run(
    *,
    job_id: int,
    images_dir: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    lease: JobLease | None = None,
) -> ImportJob:
    """Run (or resume) a job to the end and return it, re-read.

    Safe to run twice and after a crash: rows already committed are skipped, the others done
    once. A job already done or failed is returned as it is. ``images_dir`` is given by the
    terminal command for jobs it started; a worker asked to run such a job leaves it alone.
    ``on_progress(rows_done, rows_total)`` is called after each committed batch. An input that
    cannot be read at all (not JSON, no required columns) fails the job with the reason.

    Before each batch the run checks that the job is still running (a manager may have
    cancelled it) and, with the worker's job ``lease``, still its own: otherwise it stops
    there, every row either committed whole or not started, and the inputs kept for a retry.
    """
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    if not job.is_live:
        return job
    if job.kind in (ImportKind.COLLECT, ImportKind.BUCKET):
        # Fetched by workers row by row (services/collection.py); a recovery that sends it
        # here gets it re-queued there instead of read as a file manifest.
        enqueue_on_commit("ingest.collect_fetch", job.pk, what=f"collection {job.pk}")
        return job
    if job.runs_in_terminal and images_dir is None:
        logger.warning("Import job %s runs in the terminal that started it; skipped.", job.pk)
        return job
    ImportJob.objects.filter(pk=job.pk, started_at__isnull=True).update(started_at=timezone.now())
    claimed = ImportJob.objects.filter(
        pk=job.pk, status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]
    ).update(status=ImportStatus.RUNNING, heartbeat_at=timezone.now())
    if not claimed:  # cancelled since it was read
        return ImportJob.objects.select_related("project").get(pk=job.pk)

    def check() -> None:
        running = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.RUNNING).exists()
        if not running or (lease is not None and not job_heartbeat(lease)):
            raise ImportCancelled(job.pk)

    try:
        with ExitStack() as stack:
            plan = _plan(job=job, images_dir=images_dir, stack=stack)
            if not plan.items:  # done with nothing to show: say why, not just "0 rows"
                plan.notes.append(NO_ROWS[job.kind])
            ImportJob.objects.filter(pk=job.pk).update(
                rows_total=len(plan.items), notes=[display_text(n, limit=500) for n in plan.notes]
            )
            _run_items(job=job, items=plan.items, on_progress=on_progress, check=check)
    except ImportCancelled:
        # The cancel already ended the job with its reason; a retry resumes from here.
        logger.warning("Import job %s stopped: cancelled", job.pk)
        _stopped(job=job)
    except SourceError as exc:
        _finish(job=job, status=ImportStatus.FAILED, error=display_text(str(exc), limit=2000))
        _inputs_discard(job=job)
    except Exception:
        logger.exception("Import job %s failed", job.pk)
        _finish(job=job, status=ImportStatus.FAILED, error=JOB_INTERNAL_ERROR)
        _inputs_discard(job=job)
        raise
    else:
        # Only a job still running is done: one cancelled after its last batch stays cancelled
        # (and keeps its inputs; a retry finds every row committed and ends at once).
        now = timezone.now()
        if ImportJob.objects.filter(pk=job.pk, status=ImportStatus.RUNNING).update(
            status=ImportStatus.DONE, error="", finished_at=now, heartbeat_at=now
        ):
            _inputs_discard(job=job)
        else:
            _stopped(job=job)
    return ImportJob.objects.select_related("project").get(pk=job.pk)


RUN = "ingest.run_import"
JOB_GAVE_UP = (
    "Its worker stopped answering {runs} times in a row (killed, out of memory or the machine "
    "went away): not tried again. The rows read so far keep their outcomes; import the file "
    "again to read the rest."
)


def import_job_run_leased(*, job_id: int) -> ImportJob | None:
    """``import_job_run`` as a worker runs it: holding the job's lease with a heartbeat
    (config.jobs), so a second delivery while it runs does nothing and a run whose worker died
    is found by ``import_jobs_recover``. None when another live run holds it."""
    what = f"import job {job_id}"
    with job_running(RUN, str(job_id), job_id, what=what) as lease:
        if lease is None:
            return None
        return import_job_run(job_id=job_id, lease=lease)


CANCELLED = "cancelled"  # the key in a cancelled job's options
# The key in the options of a job cancelled while a live run read it, until that run has
# committed the batch it was in and stopped: its counts are not final until then.
STOPPING = "stopping"
JOB_CANCELLED = "Cancelled by {user}."
NOT_CANCELLABLE = "Only a queued or running import can be cancelled; import {pk} is {status}."
NOT_RETRYABLE = "Only a failed or cancelled import can be run again; import {pk} is {status}."
COLLECTION_ACTIONS = "A collection is paused, resumed and retried with its own buttons."
INPUTS_GONE = (
    "The uploaded files of import {pk} are no longer stored (a failed import's files are "
    "deleted): send them again as a new import."
)


class ImportCancelled(Exception):
    """The job was cancelled (or taken for dead and sent again) while this run read it."""


class ImportRefused(ValueError):
    """A cancel or retry the job's state does not allow (409 with the reason)."""


def import_job_cancel(*, job: ImportJob, by: AbstractBaseUser) -> ImportJob:
    """Stop a queued or running import: it is cancelled at once, and a worker reading it
    stops before its next batch of rows (every row already read keeps its outcome; none is
    half-written). Its uploaded files stay for a retry. Raises ``ImportRefused`` otherwise."""
    if job.kind in (ImportKind.COLLECT, ImportKind.BUCKET):
        raise ImportRefused(COLLECTION_ACTIONS)
    error = JOB_CANCELLED.format(user=by.get_username())
    with transaction.atomic():
        current = ImportJob.objects.select_for_update().get(pk=job.pk)
        if current.status not in (ImportStatus.QUEUED, ImportStatus.RUNNING):
            raise ImportRefused(
                NOT_CANCELLABLE.format(pk=job.pk, status=current.get_status_display().lower())
            )
        now = timezone.now()
        current.status, current.error, current.finished_at = ImportStatus.CANCELLED, error, now
        stopping = {STOPPING: True} if job_alive(RUN, str(job.pk)) else {}
        current.options = {**current.options, CANCELLED: True, **stopping}
        current.save(update_fields=["status", "error", "finished_at", "options"])
    job_cancel(RUN, str(job.pk), error=error)
    job.refresh_from_db()
    return job


def _stopped(*, job: ImportJob) -> None:
    """A cancelled job's run has committed its last batch and stopped: its counts are final."""
    with transaction.atomic():
        current = ImportJob.objects.select_for_update().get(pk=job.pk)
        if STOPPING in current.options:
            current.options = {k: v for k, v in current.options.items() if k != STOPPING}
            current.save(update_fields=["options"])


def import_job_stopping(*, job: ImportJob) -> bool:
    """Whether a cancelled job's run is still committing the batch it was in (the page says
    "Cancelling…" and keeps polling): until it stops, or its heartbeat says it died."""
    if job.status != ImportStatus.CANCELLED or not job.options.get(STOPPING):
        return False
    stale = settings.CONCORD_JOB_STALE_SECONDS.get(RUN, settings.CONCORD_JOB_STALE_SECONDS["*"])
    alive = timezone.now() - timedelta(seconds=stale)
    return job.heartbeat_at is not None and job.heartbeat_at > alive


def import_job_retry_refusal(*, job: ImportJob) -> str:
    """Why the job cannot be run again now ("" when it can): the page shows Retry only then."""
    if job.kind in (ImportKind.COLLECT, ImportKind.BUCKET):
        return COLLECTION_ACTIONS
    if job.runs_in_terminal:
        command = "import_coco" if job.kind == ImportKind.COCO else "import_manifest"
        return JOB_TERMINAL_ONLY.format(command=command)
    if job.status not in (ImportStatus.FAILED, ImportStatus.CANCELLED):
        return NOT_RETRYABLE.format(pk=job.pk, status=job.get_status_display().lower())
    if not job.inputs or not all(default_storage.exists(e["storage"]) for e in job.inputs):
        return INPUTS_GONE.format(pk=job.pk)
    return ""


def import_job_retry(*, job: ImportJob) -> ImportJob:
    """Queue a failed or cancelled import again (sent after commit): the run resumes, skipping
    the rows already committed. Raises ``ImportRefused`` when the job is not failed, is a
    collection, runs in a terminal, or its uploaded files are gone."""
    refusal = import_job_retry_refusal(job=job)
    if refusal:
        raise ImportRefused(refusal)
    with transaction.atomic():
        current = ImportJob.objects.select_for_update().get(pk=job.pk)
        if current.status not in (ImportStatus.FAILED, ImportStatus.CANCELLED):
            raise ImportRefused(
                NOT_RETRYABLE.format(pk=job.pk, status=current.get_status_display().lower())
            )
        current.status, current.error, current.finished_at = ImportStatus.QUEUED, "", None
        current.options = {
            k: v for k, v in current.options.items() if k not in (CANCELLED, STOPPING)
        }
        current.save(update_fields=["status", "error", "finished_at", "options"])
        # A fresh count of attempts: the give-up rule counts deaths since the last retry.
        JobLease.objects.filter(name=RUN, key=str(job.pk), heartbeat_at=None).update(runs=0)
        import_job_enqueue(job=current)
    job.refresh_from_db()
    return job


def import_jobs_recover() -> list[int]:
    """Import jobs whose worker died (what beat runs every minute): sent again (a resumed run
    skips the rows already committed), or failed with JOB_GAVE_UP after CONCORD_JOB_MAX_RUNS
    deaths in a row. Returns the job ids acted on."""

    def failed(job_id: int, error: str) -> None:
        ImportJob.objects.filter(pk=job_id, status=ImportStatus.RUNNING).update(
            status=ImportStatus.FAILED, error=error, finished_at=timezone.now()
        )

    return jobs_recover(
        RUN, what=lambda job_id: f"import job {job_id}", gave_up=JOB_GAVE_UP, on_give_up=failed
    )


def _inputs_discard(*, job: ImportJob) -> None:
    """An ended job's uploaded files are not needed any more: a done job's rows all have their
    outcome and every image its own file; a job whose input could not be read fails the same
    way on a second run (its page says why, and the person sends the corrected files as a new
    import). They leave the storage. A cancelled job, or one whose worker kept dying, keeps
    them for Retry (``import_job_retry``)."""
    for entry in job.inputs:
        try:
            default_storage.delete(entry["storage"])
        except OSError:
            logger.warning("Import job %s: could not delete %s", job.pk, entry["storage"])


def _finish(*, job: ImportJob, status: str, error: str = "") -> None:
    now = timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(
        status=status, error=error, finished_at=now, heartbeat_at=now
    )


def _run_items(
    *,
    job: ImportJob,
    items: list[_Item],
    on_progress: Callable[[int, int], None] | None,
    check: Callable[[], None] = lambda: None,
) -> None:
    done = _committed_rows(job=job)
    state = _state_resumed(job=job, items=items, done=done)
    pending = iter([item for item in items if item.position not in done])
    total = len(items)
    while True:
        check()  # before the batch's files are stored: a stop leaves nothing of it
        batch, started = [], time.monotonic()
        prepared: list[_Prepared] = []
        stored: dict[str, _Stored] = {}
        for item in pending:
            prepared.append(_prepare(item=item, job=job, state=state, stored=stored))
            batch.append(item)
            if len(batch) >= BATCH_ROWS or time.monotonic() - started > BATCH_SECONDS:
                break
        if not batch:
            return
        rows_done = _commit_batch(job=job, prepared=prepared, state=state, stored=stored)
        for entry in stored.values():
            if entry.sha256 not in state.image_by_sha:
                image_file_discard(name=entry.file)
        if on_progress is not None:
            on_progress(rows_done, total)


@dataclass
class RowInput:
    """One row handed in by another ingest path (a fetched URL, an S3 object): its position in
    the job, how to find it, its caption and provenance, and either its bytes or why it has
    none (``refusal``)."""

    position: int
    where: str
    name: str
    source: str
    data: bytes | None = None
    refusal: str = ""
    caption: str | None = None
    original_name: str = ""
    source_url: str = ""
    license_name: str = ""
    license_url: str = ""
    # check_image's result for ``data`` when the caller already ran it (off the main thread).
    checked: CheckedImage | None = None


def import_rows_write(*, job: ImportJob, rows: Sequence[RowInput]) -> dict[int, ImportRow]:
    """Write rows of ``job`` through the normal ingest path (image checks, EXIF stripped, dedup
    by content within the project, captions, provenance, one ImportRow each) and return the
    ImportRow of each position, as written now or by an earlier run.

    Call inside a transaction to make the rows part of it (collection marks its items fetched
    in the same one). A position that already has its row is left as it is, so a row handed in
    twice (a worker killed after its commit, the row claimed again) is written once. A row is
    "added" only when it made its image: a later row of the same file (the same URL twice) that
    brings a caption is "merged" into it, so the rows added are the images added.
    """
    state = _RunState(added_makes_image=True)
    stored: dict[str, _Stored] = {}
    prepared = []
    # The images this batch's bytes already are, in one query rather than one per row.
    shas = {
        row.checked.sha256 if row.checked else content_sha256(row.data)
        for row in rows
        if row.data is not None and not row.refusal
    }
    if shas:
        state.image_by_sha.update(
            Image.objects.filter(project_id=job.project_id, sha256__in=shas).values_list(
                "sha256", "pk"
            )
        )
        state.absent = shas - set(state.image_by_sha)
    for row in rows:
        data = row.data
        item = _Item(
            position=row.position,
            where=display_text(row.where, limit=_WHERE_MAX),
            name=display_text(row.name, limit=_NAME_MAX),
            error=row.refusal,
            caption=row.caption,
            source=row.source,
            original_name=row.original_name,
            source_url=row.source_url,
            license_name=row.license_name,
            license_url=row.license_url,
            load=(lambda data=data: data) if data is not None and not row.refusal else None,
            checked=row.checked,
        )
        prepared.append(_prepare(item=item, job=job, state=state, stored=stored))
    try:
        _commit_batch(job=job, prepared=prepared, state=state, stored=stored)
    finally:
        for entry in stored.values():
            if entry.sha256 not in state.image_by_sha:
                image_file_discard(name=entry.file)
    positions = [row.position for row in rows]
    return {row.position: row for row in ImportRow.objects.filter(job=job, position__in=positions)}


def stored_job_create(
    *,
    project: Project,
    kind: str,
    source: str,
    created_by: AbstractBaseUser | None,
    inputs: list[tuple[str, File]],
    options: dict | None = None,
) -> ImportJob:
    """An ImportJob with its input files copied into the default storage (for other ingest
    paths: a collection's URL manifest). Nothing is enqueued."""
    return _job_create(
        project=project,
        kind=kind,
        source=source,
        created_by=created_by,
        inputs=inputs,
        options=options,
    )


def _committed_rows(*, job: ImportJob) -> set[int]:
    return set(ImportRow.objects.filter(job=job).values_list("position", flat=True))


def _state_resumed(*, job: ImportJob, items: list[_Item], done: set[int]) -> _RunState:
    state = _RunState()
    if not done:
        return state
    by_position = {item.position: item for item in items}
    for (
        position,
        outcome,
        image_id,
        reason,
        caption_image,
        caption_text,
    ) in ImportRow.objects.filter(job=job).values_list(
        "position", "outcome", "image_id", "reason", "caption__image_id", "caption__text"
    ):
        item = by_position.get(position)
        if caption_image is not None:
            state.occurrences[(caption_image, caption_text)] += 1
        if item is not None and item.key:
            state.coco_images[item.key] = (
                image_id if outcome != RowOutcome.REFUSED and image_id else reason
            )
    return state


# --- phase 1: read, check and store files; no database writes -----------------------------------


def _prepare(
    *, item: _Item, job: ImportJob, state: _RunState, stored: dict[str, _Stored]
) -> _Prepared:
    prepared = _Prepared(item=item)
    if item.error:
        prepared.refusal = item.error
        return prepared
    try:
        if item.caption is not None:
            prepared.text = clean_caption(
                item.caption, max_chars=settings.CONCORD_MAX_CAPTION_CHARS
            )
        if item.load is not None:
            prepared.sha256 = _image_sha(item=item, job=job, state=state, stored=stored)
    except (CaptionError, ImageRejected, MemberRefused, _RowRefused) as exc:
        prepared.refusal = str(exc)
    except Exception:
        logger.exception("Import job %s: %s could not be prepared", job.pk, item.where)
        prepared.refusal = ROW_INTERNAL_ERROR
    return prepared


class _RowRefused(ValueError):
    pass


def _image_sha(*, item: _Item, job: ImportJob, state: _RunState, stored: dict[str, _Stored]) -> str:
    known = state.file_sha.get(item.file_key) if item.file_key else None
    if isinstance(known, Exception):
        raise known
    if isinstance(known, str) and (known in state.image_by_sha or known in stored):
        return known
    try:
        data = item.load()
        # A row checked off the main thread carries the hash of these very bytes already.
        sha256 = item.checked.sha256 if item.checked is not None else content_sha256(data)
        if sha256 not in state.image_by_sha and sha256 not in stored and sha256 in state.absent:
            stored[sha256] = _store(job=job, data=data, sha256=sha256, checked=item.checked)
        elif sha256 not in state.image_by_sha and sha256 not in stored:
            existing = (
                Image.objects.filter(project_id=job.project_id, sha256=sha256)
                .values_list("pk", flat=True)
                .first()
            )
            if existing is not None:
                state.image_by_sha[sha256] = existing
            else:
                stored[sha256] = _store(job=job, data=data, sha256=sha256, checked=item.checked)
    except (ImageRejected, MemberRefused, _RowRefused) as exc:
        if item.file_key:
            state.file_sha[item.file_key] = type(exc)(str(exc))
        raise
    if item.file_key:
        state.file_sha[item.file_key] = sha256
    return sha256


def _store(
    *, job: ImportJob, data: bytes, sha256: str, checked: CheckedImage | None = None
) -> _Stored:
    if checked is None or checked.sha256 != sha256:
        checked = check_image(
            data,
            max_bytes=settings.CONCORD_MAX_IMAGE_BYTES,
            max_pixels=settings.CONCORD_MAX_IMAGE_PIXELS,
        )
    name = image_file_save(project_id=job.project_id, checked=checked)
    size = len(checked.content)
    # The bytes are in the storage now; keep only what the row needs.
    slim = CheckedImage(
        content=b"",
        sha256=checked.sha256,
        width=checked.width,
        height=checked.height,
        format=checked.format,
        extension=checked.extension,
    )
    return _Stored(sha256=sha256, file=name, size=size, checked=slim)


# --- phase 2: one transaction per batch, one savepoint per row ----------------------------------


@dataclass
class _Tally:
    counts: Counter = field(default_factory=Counter)
    images: int = 0
    captions: int = 0
    new_images: list[int] = field(default_factory=list)
    captioned: set[int] = field(default_factory=set)


def _commit_batch(
    *, job: ImportJob, prepared: list[_Prepared], state: _RunState, stored: dict[str, _Stored]
) -> int:
    """Write a batch in one transaction: in bulk when every row goes in, and otherwise (some row
    the database refuses) again row by row, each in its own savepoint, so that row alone is
    refused. The job's counters and heartbeat move in the same transaction as the rows."""
    state.undo = []
    try:
        with transaction.atomic():
            tally = _write_bulk(job=job, prepared=prepared, state=state, stored=stored)
            _count(job=job, tally=tally)
    except DatabaseError:
        for undo in reversed(state.undo):
            undo()
        tally = _Tally()
        with transaction.atomic():
            for entry in prepared:
                _commit_row(job=job, entry=entry, state=state, stored=stored, tally=tally)
            _count(job=job, tally=tally)
    return ImportJob.objects.filter(pk=job.pk).values_list("rows_done", flat=True).get()


def _count(*, job: ImportJob, tally: "_Tally") -> None:
    ImportJob.objects.filter(pk=job.pk).update(
        rows_done=F("rows_done") + sum(tally.counts.values()),
        added=F("added") + tally.counts[RowOutcome.ADDED],
        present=F("present") + tally.counts[RowOutcome.PRESENT],
        merged=F("merged") + tally.counts[RowOutcome.MERGED],
        refused=F("refused") + tally.counts[RowOutcome.REFUSED],
        images_added=F("images_added") + tally.images,
        captions_added=F("captions_added") + tally.captions,
        heartbeat_at=timezone.now(),
    )
    if tally.new_images:
        thumbnails_enqueue(image_ids=tally.new_images)
        cleaning_enqueue(image_ids=tally.new_images)
    if tally.captioned:
        captions_check_enqueue(image_ids=sorted(tally.captioned))


def _write_bulk(
    *, job: ImportJob, prepared: list[_Prepared], state: _RunState, stored: dict[str, _Stored]
) -> "_Tally":
    """The batch's images, extra sources, captions, pairs and rows in a few bulk inserts, with
    the same outcomes the row-by-row path gives. Raises DatabaseError when any insert fails; the
    caller's transaction then rolls the whole batch back (``state.undo`` restores the rest)."""
    tally = _Tally()
    # 1. New images, one per new content, with the first row's provenance.
    creating: dict[str, Image] = {}
    first_item: dict[str, _Item] = {}
    for entry in prepared:
        sha = entry.sha256
        if entry.refusal or entry.item.ref or not sha or sha in state.image_by_sha:
            continue
        if sha not in creating:
            stored_entry, item = stored[sha], entry.item
            creating[sha] = Image(
                project_id=job.project_id,
                file=stored_entry.file,
                sha256=sha,
                width=stored_entry.checked.width,
                height=stored_entry.checked.height,
                format=stored_entry.checked.format,
                size_bytes=stored_entry.size,
                source=item.source,
                original_name=item.original_name,
                source_url=item.source_url,
                license_name=item.license_name,
                license_url=item.license_url,
                uploaded_by_id=job.created_by_id,
            )
            first_item[sha] = item
    if creating:
        Image.objects.bulk_create(list(creating.values()))
    for sha, image in creating.items():
        state.image_by_sha[sha] = image.pk
        state.created_here.add(image.pk)
        state.primary[image.pk] = _provenance_of(image)
        state.provenances[image.pk] = set()
        state.undo.append(lambda sha=sha: state.image_by_sha.pop(sha, None))
        state.undo.append(lambda pk=image.pk: state.created_here.discard(pk))
    # 2. What the database knows of the other images this batch touches.
    touched = {
        state.image_by_sha[entry.sha256]
        for entry in prepared
        if not entry.refusal and entry.sha256 in state.image_by_sha
    }
    touched |= {
        target
        for entry in prepared
        if entry.item.ref and isinstance(target := state.coco_images.get(entry.item.ref), int)
    }
    unknown = [pk for pk in touched if pk not in state.primary]
    if unknown:
        fields = ("pk", "source", "original_name", "source_url", "license_name", "license_url")
        for pk, *provenance in Image.objects.filter(pk__in=unknown).values_list(*fields):
            state.primary[pk] = tuple(provenance)
            state.provenances[pk] = set()
        for source in ImageSource.objects.filter(image_id__in=unknown):
            state.provenances[source.image_id].add(_provenance_of(source))
    old = [pk for pk in touched if pk not in state.created_here]
    existing_keys = {
        (image_id, key): pk
        for image_id, key, pk in Caption.objects.filter(image_id__in=old)
        .exclude(import_key="")
        .values_list("image_id", "import_key", "pk")
    }
    # 3. Each row's outcome, in order, and what it adds.
    sources: list[ImageSource] = []
    captions: list[Caption] = []
    rows: list[tuple[ImportRow, Caption | None]] = []
    for entry in prepared:
        item = entry.item
        row, caption = _plan_row(
            job=job,
            entry=entry,
            state=state,
            created=creating,
            first_item=first_item,
            existing_keys=existing_keys,
            sources=sources,
        )
        if caption is not None:
            captions.append(caption)
            tally.captions += 1
            tally.captioned.add(caption.image_id)
        rows.append((row, caption))
        tally.counts[row.outcome] += 1
        if item.key:
            state.coco_images[item.key] = (
                row.image_id if row.outcome != RowOutcome.REFUSED and row.image_id else row.reason
            )
            state.undo.append(lambda key=item.key: state.coco_images.pop(key, None))
    tally.images = len(creating)
    tally.new_images = [image.pk for image in creating.values()]
    # 4. Written together: a failure anywhere undoes the whole batch.
    if sources:
        ImageSource.objects.bulk_create(sources)
    if captions:
        Caption.objects.bulk_create(captions)
        Pair.objects.bulk_create(
            [
                Pair(image_id=caption.image_id, caption_id=caption.pk, kind=PairKind.POSITIVE)
                for caption in captions
            ]
        )
    for row, caption in rows:
        if caption is not None:
            row.caption_id = caption.pk
    ImportRow.objects.bulk_create([row for row, _ in rows])
    return tally


def _plan_row(
    *,
    job: ImportJob,
    entry: _Prepared,
    state: _RunState,
    created: dict[str, Image],
    first_item: dict[str, _Item],
    existing_keys: dict[tuple[int, str], int],
    sources: list[ImageSource],
) -> tuple[ImportRow, Caption | None]:
    """One row's outcome for the bulk path, from the state alone (no query)."""
    item = entry.item
    if entry.refusal:
        return _row(job=job, item=item, outcome=RowOutcome.REFUSED, reason=entry.refusal), None
    image_new = source_added = False
    same_file = True
    if item.ref:
        target = state.coco_images.get(item.ref)
        if target is None or isinstance(target, str):
            reason = (
                IMAGE_ID_UNKNOWN.format(ref=item.ref)
                if target is None
                else IMAGE_OF_ENTRY_REFUSED.format(ref=item.ref, reason=target)
            )
            return _row(job=job, item=item, outcome=RowOutcome.REFUSED, reason=reason), None
        image_id = target
    else:
        image_id = state.image_by_sha[entry.sha256]
        image_new = first_item.get(entry.sha256) is item
        if not image_new:
            row_provenance = _provenance_of(item)
            same_file = _matches(row_provenance, state.primary[image_id])
            if not same_file and not any(
                _matches(row_provenance, known) for known in state.provenances[image_id]
            ):
                key = hashlib.sha256("\x1f".join(row_provenance).encode("utf-8")).hexdigest()
                sources.append(
                    ImageSource(
                        image_id=image_id,
                        key=key,
                        source=item.source,
                        original_name=item.original_name,
                        source_url=item.source_url,
                        license_name=item.license_name,
                        license_url=item.license_url,
                        job=job,
                    )
                )
                state.provenances[image_id].add(row_provenance)
                state.undo.append(
                    lambda pk=image_id, known=row_provenance: state.provenances[pk].discard(known)
                )
                source_added = True
    caption = None
    caption_id = None
    if item.caption is not None:
        occurrence = state.occurrences[(image_id, entry.text)]
        state.occurrences[(image_id, entry.text)] += 1
        state.undo.append(
            lambda pk=image_id, text=entry.text: state.occurrences.subtract([(pk, text)])
        )
        key = caption_import_key(entry.text, occurrence)
        caption_id = existing_keys.get((image_id, key))
        if caption_id is None:
            caption = Caption(
                image_id=image_id,
                text_raw=item.caption,
                text=entry.text,
                source=job.source,
                import_key=key,
            )
    if not (image_new or source_added or caption is not None):
        reason = ALREADY_IMPORTED if item.caption is not None else ALREADY_PRESENT
        outcome = RowOutcome.PRESENT
    elif same_file and (image_new or not state.added_makes_image):
        outcome, reason = RowOutcome.ADDED, ""
    elif same_file:
        outcome, reason = RowOutcome.MERGED, SAME_FILE_ADDED_TO.format(image_id=image_id)
    else:
        name = state.primary[image_id][1] or f"#{image_id}"
        outcome = RowOutcome.MERGED
        reason = MERGED_INTO.format(image_id=image_id, name=display_text(name, limit=120))
    row = _row(
        job=job, item=item, outcome=outcome, reason=reason, image_id=image_id, caption_id=caption_id
    )
    return row, caption


def _commit_row(
    *,
    job: ImportJob,
    entry: _Prepared,
    state: _RunState,
    stored: dict[str, _Stored],
    tally: _Tally,
) -> None:
    item = entry.item
    state.undo = []
    row_tally = _Tally()
    try:
        with transaction.atomic():
            row = _apply(job=job, entry=entry, state=state, stored=stored, tally=row_tally)
            row.save()
    except Exception as exc:
        for undo in reversed(state.undo):
            undo()
        if isinstance(exc, IntegrityError) and (
            ImportRow.objects.filter(job=job, position=item.position).exists()
        ):
            return  # another run of this job committed the row first: nothing to count here
        if isinstance(exc, DatabaseError):
            detail = (str(exc).strip().splitlines() or ["error"])[0]
            reason = ROW_DATABASE_REFUSED.format(detail=detail)
            logger.warning(
                "Import job %s: %s refused by the database: %s", job.pk, item.where, detail
            )
        else:
            logger.exception("Import job %s: %s could not be written", job.pk, item.where)
            reason = ROW_INTERNAL_ERROR
        with transaction.atomic():
            row = _row(job=job, item=item, outcome=RowOutcome.REFUSED, reason=reason)
            row.save()
        row_tally = _Tally()
    tally.counts[row.outcome] += 1
    tally.images += row_tally.images
    tally.captions += row_tally.captions
    tally.new_images += row_tally.new_images
    tally.captioned |= row_tally.captioned
    if item.key:
        state.coco_images[item.key] = (
            row.image_id if row.outcome != RowOutcome.REFUSED and row.image_id else row.reason
        )


def _row(
    *,
    job: ImportJob,
    item: _Item,
    outcome: str,
    reason: str = "",
    image_id: int | None = None,
    caption_id: int | None = None,
) -> ImportRow:
    return ImportRow(
        job=job,
        position=item.position,
        where=display_text(item.where, limit=_WHERE_MAX),
        name=display_text(item.name, limit=_NAME_MAX),
        outcome=outcome,
        reason=display_text(reason, limit=2000),
        image_id=image_id,
        caption_id=caption_id,
    )


def _apply(
    *,
    job: ImportJob,
    entry: _Prepared,
    state: _RunState,
    stored: dict[str, _Stored],
    tally: _Tally,
) -> ImportRow:
    """Write one row's image, source and caption, and return its (unsaved) ImportRow."""
    item = entry.item
    if entry.refusal:
        return _row(job=job, item=item, outcome=RowOutcome.REFUSED, reason=entry.refusal)
    if item.ref:  # a COCO annotation: its image is the outcome of its image entry
        target = state.coco_images.get(item.ref)
        if target is None:
            reason = IMAGE_ID_UNKNOWN.format(ref=item.ref)
            return _row(job=job, item=item, outcome=RowOutcome.REFUSED, reason=reason)
        if isinstance(target, str):
            reason = IMAGE_OF_ENTRY_REFUSED.format(ref=item.ref, reason=target)
            return _row(job=job, item=item, outcome=RowOutcome.REFUSED, reason=reason)
        image_id, created, same_file, source_added = target, False, True, False
    else:
        image_id, created = _image(
            job=job, sha256=entry.sha256, item=item, state=state, stored=stored
        )
        same_file, source_added = True, False
        if created:
            tally.images += 1
            tally.new_images.append(image_id)
        else:
            same_file, source_added = _provenance(
                job=job, image_id=image_id, item=item, state=state
            )
    caption_id, caption_added = None, False
    if item.caption is not None:
        caption_id, caption_added = _caption(
            job=job, image_id=image_id, raw=item.caption, text=entry.text, state=state
        )
        if caption_added:
            tally.captions += 1
            tally.captioned.add(image_id)
    if not (created or source_added or caption_added):
        reason = ALREADY_IMPORTED if item.caption is not None else ALREADY_PRESENT
        outcome = RowOutcome.PRESENT
    elif same_file and (created or not state.added_makes_image):
        outcome, reason = RowOutcome.ADDED, ""
    elif same_file:
        outcome, reason = RowOutcome.MERGED, SAME_FILE_ADDED_TO.format(image_id=image_id)
    else:
        name = state.primary[image_id][1] or f"#{image_id}"
        outcome = RowOutcome.MERGED
        reason = MERGED_INTO.format(image_id=image_id, name=display_text(name, limit=120))
    return _row(
        job=job, item=item, outcome=outcome, reason=reason, image_id=image_id, caption_id=caption_id
    )


def _image(
    *, job: ImportJob, sha256: str, item: _Item, state: _RunState, stored: dict[str, _Stored]
) -> tuple[int, bool]:
    """The image with these bytes: found, or created from the stored file. (id, created)."""
    if sha256 in state.image_by_sha:
        return state.image_by_sha[sha256], False
    entry = stored[sha256]
    checked = entry.checked
    try:
        with transaction.atomic():
            image = Image.objects.create(
                project_id=job.project_id,
                file=entry.file,
                sha256=sha256,
                width=checked.width,
                height=checked.height,
                format=checked.format,
                size_bytes=entry.size,
                source=item.source,
                original_name=item.original_name,
                source_url=item.source_url,
                license_name=item.license_name,
                license_url=item.license_url,
                uploaded_by_id=job.created_by_id,
            )
    except IntegrityError:
        # Another job added the same bytes since this batch looked: that image it is.
        existing = Image.objects.filter(project_id=job.project_id, sha256=sha256).first()
        if existing is None:
            raise
        state.image_by_sha[sha256] = existing.pk
        state.undo.append(lambda: state.image_by_sha.pop(sha256, None))
        return existing.pk, False
    state.image_by_sha[sha256] = image.pk
    state.created_here.add(image.pk)
    state.primary[image.pk] = _provenance_of(image)
    state.provenances[image.pk] = set()
    state.undo.append(lambda: state.image_by_sha.pop(sha256, None))
    state.undo.append(lambda: state.created_here.discard(image.pk))
    return image.pk, True


def _provenance_of(record: Image | ImageSource | _Item) -> tuple:
    return (
        record.source,
        record.original_name,
        record.source_url,
        record.license_name,
        record.license_url,
    )


def _matches(row: tuple, known: tuple) -> bool:
    """A row matches a provenance when its source and file name agree and each of its other
    fields is empty or equal (manifests often give the licence on an image's first line only)."""
    return row[:2] == known[:2] and all(
        not mine or mine == theirs for mine, theirs in zip(row[2:], known[2:], strict=True)
    )


def _provenance(
    *, job: ImportJob, image_id: int, item: _Item, state: _RunState
) -> tuple[bool, bool]:
    """(the row's file is the image's own, a new ImageSource was recorded)."""
    if image_id not in state.primary:
        image = Image.objects.only(
            "source", "original_name", "source_url", "license_name", "license_url"
        ).get(pk=image_id)
        state.primary[image_id] = _provenance_of(image)
        state.provenances[image_id] = {
            _provenance_of(source) for source in ImageSource.objects.filter(image_id=image_id)
        }
    row = _provenance_of(item)
    if _matches(row, state.primary[image_id]):
        return True, False
    if any(_matches(row, known) for known in state.provenances[image_id]):
        return False, False
    key = hashlib.sha256("\x1f".join(row).encode("utf-8")).hexdigest()
    _, created = ImageSource.objects.get_or_create(
        image_id=image_id,
        key=key,
        defaults={
            "source": item.source,
            "original_name": item.original_name,
            "source_url": item.source_url,
            "license_name": item.license_name,
            "license_url": item.license_url,
            "job": job,
        },
    )
    state.provenances[image_id].add(row)
    state.undo.append(lambda: state.provenances[image_id].discard(row))
    return False, created


def _caption(
    *, job: ImportJob, image_id: int, raw: str, text: str, state: _RunState
) -> tuple[int, bool]:
    """The caption this row stands for on the image (by text and occurrence): (id, created)."""
    occurrence = state.occurrences[(image_id, text)]
    state.occurrences[(image_id, text)] += 1
    state.undo.append(lambda: state.occurrences.subtract([(image_id, text)]))
    key = caption_import_key(text, occurrence)
    if image_id not in state.created_here:
        existing = (
            Caption.objects.filter(image_id=image_id, import_key=key)
            .values_list("pk", flat=True)
            .first()
        )
        if existing is not None:
            return existing, False
    caption = Caption.objects.create(
        image_id=image_id, text_raw=raw, text=text, source=job.source, import_key=key
    )
    Pair.objects.create(image_id=image_id, caption=caption, kind=PairKind.POSITIVE)
    return caption.pk, True


# ------------------------------------------------------------------------------------------------
# Reading a job's inputs into items.
# ------------------------------------------------------------------------------------------------


def _plan(*, job: ImportJob, images_dir: Path | None, stack: ExitStack) -> _Plan:
    if job.kind == ImportKind.UPLOAD:
        return _upload_plan(job=job, stack=stack)
    manifest = next((item for item in job.inputs if item["role"] == "manifest"), None)
    notes: list[str] = []
    if manifest is not None:
        name = manifest["name"]
        with default_storage.open(manifest["storage"], "rb") as handle:
            raw = handle.read(settings.CONCORD_IMPORT_MAX_BYTES + 1)
    else:
        name, raw = _manifest_in_zip(job=job)
        notes.append(f"Read the manifest {name} from the uploaded zip.")
    if len(raw) > settings.CONCORD_IMPORT_MAX_BYTES:
        raise SourceError(
            INPUT_TOO_LARGE.format(
                name=name,
                size_mb=len(raw) / 2**20,
                limit_mb=settings.CONCORD_IMPORT_MAX_BYTES / 2**20,
            )
        )
    encoding = job.options.get("encoding", "auto")
    parsed: ParsedSource = (
        parse_coco(raw, encoding=encoding)
        if job.kind == ImportKind.COCO
        else parse_manifest(raw, name=name, encoding=encoding)
    )
    parsed.notes[:0] = notes
    del raw
    if images_dir is not None:
        resolver: _Resolver = _FolderResolver(images_dir)
    else:
        resolver = _StoredResolver(
            [item for item in job.inputs if item["role"] == "images"], stack=stack
        )
    items = [
        _row_item(position=position, row=row, source=job.source, resolver=resolver)
        for position, row in enumerate(parsed.rows)
    ]
    return _Plan(items=items, notes=parsed.notes + resolver.notes)


def _manifest_in_zip(*, job: ImportJob) -> tuple[str, bytes]:
    """The one manifest (or COCO file) inside the uploaded zips, when none was sent on its own."""
    suffixes = _manifest_suffixes(job.kind)
    found = []
    for entry in job.inputs:
        if entry["role"] != "images":
            continue
        with default_storage.open(entry["storage"], "rb") as handle:
            if handle.read(4) not in _ZIP_MAGIC:
                continue
            try:
                listing = list_archive(
                    handle,
                    max_files=settings.CONCORD_ZIP_MAX_FILES,
                    max_total_bytes=settings.CONCORD_ZIP_MAX_BYTES,
                )
            except ArchiveRejected:
                continue
            for member in listing.members:
                if member.name.lower().endswith(suffixes) and not member.name_error:
                    found.append((entry, member))
            if len(found) == 1 and found[0][0] is entry:
                member = found[0][1]
                try:
                    data = read_member(handle, member, max_bytes=settings.CONCORD_IMPORT_MAX_BYTES)
                except MemberRefused as exc:
                    raise SourceError(f"{member.name}: {exc}") from exc
                found[0] = (entry, member, data)
    if len(found) != 1:
        names = ", ".join(item[1].name for item in found[:5])
        raise SourceError(
            NO_MANIFEST if not found else f"Several manifests in the zip ({names}): send one."
        )
    return found[0][1].name, found[0][2]


def _row_item(*, position: int, row: SourceRow, source: str, resolver: "_Resolver") -> _Item:
    item = _Item(
        position=position,
        where=row.where,
        name=row.file_name,
        error=row.error,
        caption=row.caption,
        source=source,
        original_name=row.file_name,
        source_url=row.source_url,
        license_name=row.license_name,
        license_url=row.license_url,
        key=row.key,
        ref=row.ref,
    )
    if row.file_name and not row.error:
        item.file_key = unicodedata.normalize("NFC", row.file_name)
        item.load = resolver.loader(row.file_name)
    return item


def _upload_plan(*, job: ImportJob, stack: ExitStack) -> _Plan:
    items: list[_Item] = []
    notes: list[str] = []
    max_bytes = settings.CONCORD_MAX_IMAGE_BYTES
    for entry in job.inputs:
        handle = stack.enter_context(default_storage.open(entry["storage"], "rb"))
        head = handle.read(4)
        handle.seek(0)
        name = entry["name"]
        # Judged by content: a zip named .jpg is read as a zip, an image named .zip as an image.
        if head not in _ZIP_MAGIC and (
            not name.lower().endswith(".zip") or declared_pixels(handle) is not None
        ):
            items.append(
                _Item(
                    position=len(items),
                    where=name,
                    name=name,
                    error=name_problem(name, field="file name"),
                    source=job.source,
                    original_name=name,
                    load=_reader(handle, max_bytes=max_bytes, size=entry.get("size", 0)),
                )
            )
            continue
        try:
            listing = list_archive(
                handle,
                max_files=settings.CONCORD_ZIP_MAX_FILES,
                max_total_bytes=settings.CONCORD_ZIP_MAX_BYTES,
            )
        except ArchiveRejected as exc:
            items.append(_Item(position=len(items), where=name, name=name, error=str(exc)))
            continue
        if listing.skipped:
            notes.append(SKIPPED_CLUTTER.format(archive=name, count=listing.skipped))
        for member in listing.members:
            items.append(
                _Item(
                    position=len(items),
                    where=f"{name}: {member.name}",
                    name=member.name,
                    error=member.name_error,
                    source=Source.ZIP,
                    original_name=member.name,
                    load=_member_reader(handle, member, max_bytes=max_bytes),
                )
            )
    return _Plan(items=items, notes=notes)


def _reader(handle: BinaryIO, *, max_bytes: int, size: int) -> Callable[[], bytes]:
    """Reads a stored file of ``size`` bytes (as uploaded); one over the limit is refused with
    its true size, without reading it."""

    def load() -> bytes:
        if size > max_bytes:
            raise ImageRejected(
                IMAGE_TOO_LARGE.format(size_mb=size / 2**20, limit_mb=max_bytes / 2**20)
            )
        handle.seek(0)
        # One byte past the limit is enough to refuse an oversized file without reading it all.
        return handle.read(max_bytes + 1)

    return load


def _member_reader(handle: BinaryIO, member, *, max_bytes: int) -> Callable[[], bytes]:
    def load() -> bytes:
        return read_member(handle, member, max_bytes=max_bytes)

    return load


class _Resolver:
    """Finds the bytes of a file a manifest names. Names compare in NFC, so a name typed on one
    system finds the same-looking file stored in NFD by another (macOS)."""

    notes: list[str]

    def loader(self, name: str) -> Callable[[], bytes]:
        raise NotImplementedError


class _FolderResolver(_Resolver):
    """Files under a folder on this machine (the terminal commands' ``--images``)."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.notes = []
        self._index: dict[str, Path] | None = None

    def loader(self, name: str) -> Callable[[], bytes]:
        return lambda: self._load(name)

    def _load(self, name: str) -> bytes:
        relative = name.replace("\\", "/")
        if relative.startswith("/") or ".." in relative.split("/"):
            raise _RowRefused(IMAGE_PATH_UNSAFE.format(name=name))
        path = self.root / relative
        if not path.is_file():
            path = self._indexed().get(unicodedata.normalize("NFC", relative))
            if path is None:
                raise _RowRefused(IMAGE_FILE_MISSING.format(name=name))
        if not path.resolve().is_relative_to(self.root):
            raise _RowRefused(IMAGE_PATH_UNSAFE.format(name=name))
        size = path.stat().st_size
        limit = settings.CONCORD_MAX_IMAGE_BYTES
        if size > limit:
            raise _RowRefused(
                IMAGE_FILE_TOO_LARGE.format(name=name, size_mb=size / 2**20, limit_mb=limit / 2**20)
            )
        return path.read_bytes()

    def _indexed(self) -> dict[str, Path]:
        if self._index is None:
            self._index = {}
            for folder, _dirs, files in os.walk(self.root):
                for file_name in files:
                    path = Path(folder) / file_name
                    key = unicodedata.normalize("NFC", path.relative_to(self.root).as_posix())
                    self._index.setdefault(key, path)
        return self._index


class _StoredResolver(_Resolver):
    """Images uploaded with a manifest: files and zips in the storage. A name is found by its
    path, or by its file name alone when only one uploaded file has it (a zipped folder)."""

    def __init__(self, inputs: list[dict], *, stack: ExitStack):
        self.notes = []
        self._paths: dict[str, Callable[[], bytes]] = {}
        self._basenames: dict[str, list[tuple[str, Callable[[], bytes]]]] = {}
        max_bytes = settings.CONCORD_MAX_IMAGE_BYTES
        for entry in inputs:
            handle = stack.enter_context(default_storage.open(entry["storage"], "rb"))
            head = handle.read(4)
            handle.seek(0)
            if head not in _ZIP_MAGIC:
                self._add(
                    entry["name"], _reader(handle, max_bytes=max_bytes, size=entry.get("size", 0))
                )
                continue
            try:
                listing = list_archive(
                    handle,
                    max_files=settings.CONCORD_ZIP_MAX_FILES,
                    max_total_bytes=settings.CONCORD_ZIP_MAX_BYTES,
                )
            except ArchiveRejected as exc:
                self.notes.append(f"{entry['name']}: {exc} Its images are not available.")
                continue
            for member in listing.members:
                if not member.name_error:
                    self._add(member.name, _member_reader(handle, member, max_bytes=max_bytes))

    def _add(self, name: str, load: Callable[[], bytes]) -> None:
        key = unicodedata.normalize("NFC", name.replace("\\", "/")).lstrip("./")
        self._paths.setdefault(key, load)
        self._basenames.setdefault(key.rsplit("/", 1)[-1], []).append((key, load))

    def loader(self, name: str) -> Callable[[], bytes]:
        key = unicodedata.normalize("NFC", name.replace("\\", "/")).lstrip("./")
        load = self._paths.get(key)
        candidates = self._basenames.get(key.rsplit("/", 1)[-1], [])
        if load is None and len(candidates) == 1:
            load = candidates[0][1]
        if load is None:
            if len(candidates) > 1:
                shown = ", ".join(path for path, _ in candidates[:3])
                more = ", …" if len(candidates) > 3 else ""
                reason = IMAGE_NAME_AMBIGUOUS.format(
                    count=len(candidates), name=name, paths=shown + more
                )
            else:
                reason = IMAGE_NOT_UPLOADED.format(name=name)

            def missing() -> bytes:
                raise _RowRefused(reason)

            return missing
        return load
