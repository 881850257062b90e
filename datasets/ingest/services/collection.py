"""Collection jobs: a manifest of image URLs fetched by workers, row by row, into the project.

The life of a job (an ImportJob of kind ``collect``):

1. ``collection_job_create`` stores the manifest (streamed by the request or the command) and
   queues ``ingest.collect_stage``.
2. ``collection_stage`` streams the manifest into one CollectItem per row, a few thousand rows
   per transaction, never holding the file whole; a row the reader refuses gets its refused
   ImportRow at once. It resumes from the last committed chunk (``options["staged"]``).
3. ``collection_run`` (task ``ingest.collect_fetch``; a few run side by side) claims pending rows
   (``select_for_update(skip_locked=True)`` on PostgreSQL, and a conditional UPDATE that holds
   on SQLite too), fetches them outside any transaction (``datasets.ingest.fetching``), and
   writes each row's outcome through the normal ingest path (``jobs.import_rows_write``) in the
   same transaction that marks the items fetched or failed. Transient failures go back to
   pending with a ``not_before``; others fail with their reason. After about
   ``CONCORD_COLLECT_RUN_SECONDS`` a task queues itself again, so a worker restart only loses a
   message, never a row: rows claimed by a worker that died are claimed again once
   ``CONCORD_COLLECT_CLAIM_SECONDS`` have passed, and an ImportRow is unique per job and
   position, so none is written twice. ``collection_resume`` is the hook a periodic recovery
   calls for a job whose tasks were lost.
4. Pause, resume and retry (failed rows only) are ``collection_pause``, ``collection_resume`` and
   ``collection_retry_failed``; ``collection_progress`` is what the page and the API show.
"""

import logging
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from config.celery import enqueue_on_commit
from datasets.ingest.collection import (
    UrlRow,
    file_name_of,
    manifest_suffix,
    numbered,
    read_url_manifest,
    retry_delay,
    row_name,
)
from datasets.ingest.fetching import (
    Fetched,
    Fetcher,
    FetchPolicy,
    HostGate,
    RedisHostGate,
    parse_networks,
    s3_fetch,
    s3_list_images,
    s3_split,
    s3_text,
    url_redacted,
)
from datasets.ingest.images import ImageRejected, check_image
from datasets.ingest.services.checks import collection_settings_problems
from datasets.ingest.services.jobs import (
    InputRefused,
    RowInput,
    import_rows_write,
    stored_job_create,
)
from datasets.ingest.sources import SourceError, display_text, message_text, text_problem
from datasets.models import (
    CollectItem,
    FetchFailure,
    FetchState,
    ImportJob,
    ImportKind,
    ImportRow,
    ImportStatus,
    Project,
    RowOutcome,
    Source,
)

logger = logging.getLogger(__name__)

STAGE_TASK = "ingest.collect_stage"
FETCH_TASK = "ingest.collect_fetch"
STAGE_CHUNK = 2000
FETCH_FAILED = "Not fetched ({label}): {detail}"
NOT_PAUSABLE = "Only a queued or running collection can be paused."
NOT_RESUMABLE = "Only a paused collection, or one whose workers stopped, can be resumed."
NOT_RETRYABLE = (
    "Failed rows can be retried only in a collection that is done, paused or running; this one"
    " is {status}."
)
NOT_A_COLLECTION = "This job is not a collection."
SETTINGS_WRONG = (
    "Paused: the collection settings are wrong, so no row was fetched. {problems} Fix them"
    " (manage.py check names them), restart the workers, then Resume."
)

_LABELS = dict(FetchFailure.choices)
_FETCHER: Fetcher | None = None
_FETCHER_KEY: tuple | None = None  # the settings it was built from
_S3 = None
_S3_LOCK = threading.Lock()


# --- creating and staging -------------------------------------------------------------------------


def collection_job_create(
    *,
    project: Project,
    manifest: File,
    created_by: AbstractBaseUser | None,
    url_column: str = "url",
    caption_column: str = "caption",
) -> ImportJob:
    """Store a URL manifest (CSV/TSV/JSONL/Parquet, img2dataset's shapes) and queue the job that
    collects it. Raises InputRefused for a name with another suffix or an empty column name."""
    try:
        manifest_suffix(manifest.name or "")
    except SourceError as exc:
        raise InputRefused(str(exc)) from exc
    if not url_column.strip() or not caption_column.strip():
        raise InputRefused("Column names may not be empty.")
    with transaction.atomic():
        job = stored_job_create(
            project=project,
            kind=ImportKind.COLLECT,
            source=Source.URL,
            created_by=created_by,
            inputs=[("manifest", manifest)],
            options={
                "url_column": url_column.strip()[:100],
                "caption_column": caption_column.strip()[:100],
                "staged": 0,
            },
        )
        enqueue_on_commit(STAGE_TASK, job.pk, what=f"collection {job.pk}")
    return job


def bucket_job_create(
    *,
    project: Project,
    bucket: str,
    prefix: str,
    created_by: AbstractBaseUser | None,
    captions_key: str = "",
) -> ImportJob:
    """Queue the import of every image under ``s3://bucket/prefix`` (on the S3-compatible
    endpoint CONCORD_COLLECT_S3_ENDPOINT). Captions come from ``captions_key``, a CSV/TSV/JSONL/
    Parquet manifest in the bucket with ``key`` (relative to the prefix) and ``caption`` columns,
    whose rows are then the job's rows; without one, every image under the prefix is listed and
    a sidecar ``<name>.txt`` beside an image is its caption. Raises InputRefused for an empty
    bucket name or a captions manifest of an unknown format."""
    bucket, prefix, captions_key = bucket.strip(), prefix.strip().lstrip("/"), captions_key.strip()
    if not bucket or "/" in bucket:
        raise InputRefused("Name the bucket (without a slash).")
    if captions_key:
        try:
            manifest_suffix(captions_key)
        except SourceError as exc:
            raise InputRefused(str(exc)) from exc
    with transaction.atomic():
        job = ImportJob.objects.create(
            project=project,
            kind=ImportKind.BUCKET,
            source=Source.BUCKET,
            created_by=created_by,
            inputs=[
                {"role": "bucket", "name": f"s3://{bucket}/{prefix}", "storage": "", "size": 0}
            ],
            options={"bucket": bucket, "prefix": prefix, "captions_key": captions_key, "staged": 0},
        )
        enqueue_on_commit(STAGE_TASK, job.pk, what=f"bucket import {job.pk}")
    return job


def s3_client():
    """A boto3 S3 client for the collection endpoint (thread-safe; one per process)."""
    global _S3
    with _S3_LOCK:
        return _S3 or _s3_make()


def _s3_make():
    global _S3
    if _S3 is None:
        import boto3
        from botocore.config import Config

        _S3 = boto3.client(
            "s3",
            endpoint_url=settings.CONCORD_COLLECT_S3_ENDPOINT or None,
            region_name=settings.CONCORD_COLLECT_S3_REGION,
            aws_access_key_id=settings.CONCORD_COLLECT_S3_ACCESS_KEY,
            aws_secret_access_key=settings.CONCORD_COLLECT_S3_SECRET_KEY,
            config=Config(
                connect_timeout=settings.CONCORD_COLLECT_CONNECT_TIMEOUT,
                read_timeout=settings.CONCORD_COLLECT_READ_TIMEOUT,
                retries={"max_attempts": 1},
                max_pool_connections=max(10, settings.CONCORD_COLLECT_THREADS),
            ),
        )
    return _S3


def _bucket_rows(job: ImportJob, stack: ExitStack) -> Iterator[UrlRow]:
    bucket, prefix = job.options["bucket"], job.options.get("prefix", "")
    captions_key = job.options.get("captions_key", "")
    client = s3_client()
    if captions_key:
        # Copied to a local temporary file and read from there as a stream (Parquet seeks).
        spool = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 (closed by the stack)
        try:
            client.download_fileobj(bucket, captions_key, spool)
        except Exception as exc:
            raise SourceError(f"Could not read s3://{bucket}/{captions_key}: {exc}") from exc
        spool.seek(0)
        return read_url_manifest(
            spool,
            name=captions_key,
            url_column=job.options.get("url_column", "key"),
            caption_column=job.options.get("caption_column", "caption"),
            key_prefix=f"s3://{bucket}/{prefix}",
        )

    def listed():
        try:
            for key in s3_list_images(client, bucket, prefix):
                yield UrlRow(where="", url=f"s3://{bucket}/{key}")
        except Exception as exc:
            raise SourceError(f"Could not list s3://{bucket}/{prefix}: {exc}") from exc

    return numbered(listed())


def collection_stage(*, job_id: int) -> ImportJob:
    """Read the job's manifest into CollectItems (resuming after the last committed chunk), then
    start fetching. A manifest that cannot be read at all fails the job with the reason."""
    job = ImportJob.objects.get(pk=job_id)
    collecting = (ImportKind.COLLECT, ImportKind.BUCKET)
    if job.kind not in collecting or job.rows_total is not None or not job.is_live:
        return job
    ImportJob.objects.filter(pk=job.pk, started_at__isnull=True).update(started_at=timezone.now())
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
    staged = int(job.options.get("staged", 0))
    try:
        with ExitStack() as stack:
            if job.kind == ImportKind.BUCKET:
                rows = _bucket_rows(job, stack)
            else:
                manifest = next(item for item in job.inputs if item["role"] == "manifest")
                handle = stack.enter_context(default_storage.open(manifest["storage"], "rb"))
                rows = read_url_manifest(
                    handle,
                    name=manifest["name"],
                    url_column=job.options.get("url_column", "url"),
                    caption_column=job.options.get("caption_column", "caption"),
                )
            position, chunk = 0, []
            for row in rows:
                if position >= staged:
                    chunk.append((position, row))
                position += 1
                if len(chunk) >= STAGE_CHUNK:
                    _stage_chunk(job=job, chunk=chunk, staged=position)
                    chunk = []
            _stage_chunk(job=job, chunk=chunk, staged=position)
    except SourceError as exc:
        now = timezone.now()
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportStatus.FAILED,
            error=message_text(str(exc), limit=2000),
            finished_at=now,
            heartbeat_at=now,
        )
        return ImportJob.objects.get(pk=job.pk)
    with transaction.atomic():
        ImportJob.objects.filter(pk=job.pk).update(rows_total=position)
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.status == ImportStatus.QUEUED:
            job.status = ImportStatus.RUNNING
            job.save(update_fields=["status"])
        if job.status == ImportStatus.RUNNING:
            _start_tasks(job=job)
    # Every row is in the database now: the stored manifest is not needed any more.
    for entry in job.inputs:
        if entry.get("storage"):
            _discard(entry["storage"])
    _finish_if_complete(job_id=job.pk)
    return ImportJob.objects.get(pk=job.pk)


@transaction.atomic
def _stage_chunk(*, job: ImportJob, chunk: list[tuple[int, UrlRow]], staged: int) -> None:
    items, refused = [], []
    now = timezone.now()
    for position, row in chunk:
        url = display_text(row.url, limit=1000)
        item = CollectItem(
            job=job,
            position=position,
            url=url,
            caption=(row.caption or "") if not row.error else "",
            license_name=row.license_name if not row.error else "",
            license_url=row.license_url if not row.error else "",
            extra=row.extra,
            host=_host(url) if not row.error else "",
        )
        if row.error:
            item.state, item.failure, item.finished_at = (
                FetchState.FAILED,
                FetchFailure.INVALID,
                now,
            )
            refused.append(
                RowInput(
                    position=position,
                    where=row.where,
                    name=url_redacted(url),
                    source=job.source,
                    refusal=row.error,
                )
            )
        items.append(item)
    CollectItem.objects.bulk_create(items, ignore_conflicts=True)
    if refused:
        import_rows_write(job=job, rows=refused)
    ImportJob.objects.filter(pk=job.pk).update(
        options=_options(job, staged=staged), heartbeat_at=timezone.now()
    )


def _discard(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError:
        logger.warning("Collection: could not delete %s", name)


def _options(job: ImportJob, **changes) -> dict:
    job.options = {**job.options, **changes}
    return job.options


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "")[:255]
    except ValueError:
        return ""


def _start_tasks(*, job: ImportJob) -> None:
    for _ in range(max(1, settings.CONCORD_COLLECT_TASKS)):
        enqueue_on_commit(FETCH_TASK, job.pk, what=f"collection {job.pk}")


# --- fetching -------------------------------------------------------------------------------------


def fetcher_default() -> Fetcher:
    """This process's fetcher, built from the settings (its connection pool and per-host gate
    are shared by every run in the process; built again when the settings change)."""
    global _FETCHER, _FETCHER_KEY
    policy = fetch_policy()
    key = (policy, settings.CONCORD_COLLECT_PER_HOST, settings.CONCORD_COLLECT_PER_HOST_RATE)
    if _FETCHER is None or key != _FETCHER_KEY:
        _FETCHER = Fetcher(policy=policy, gate=host_gate(per_host=key[1], per_second=key[2]))
        _FETCHER_KEY = key
    return _FETCHER


def host_gate(*, per_host: int, per_second: float) -> HostGate:
    """The per-host limits: over every worker (in Redis) when the broker is Redis, else per
    worker process."""
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith(("redis://", "rediss://")):
        return HostGate(per_host=per_host, per_second=per_second)
    import redis

    return RedisHostGate(
        client=redis.Redis.from_url(broker, socket_timeout=5, socket_connect_timeout=5),
        per_host=per_host,
        per_second=per_second,
        lease_seconds=settings.CONCORD_COLLECT_TOTAL_TIMEOUT + 30,
    )


def fetch_policy() -> FetchPolicy:
    """The fetch policy the settings describe (CONCORD_COLLECT_*)."""
    return FetchPolicy(
        max_bytes=settings.CONCORD_MAX_IMAGE_BYTES,
        connect_timeout=settings.CONCORD_COLLECT_CONNECT_TIMEOUT,
        read_timeout=settings.CONCORD_COLLECT_READ_TIMEOUT,
        total_timeout=settings.CONCORD_COLLECT_TOTAL_TIMEOUT,
        max_redirects=settings.CONCORD_COLLECT_MAX_REDIRECTS,
        user_agent=settings.CONCORD_COLLECT_USER_AGENT,
        allow_hosts=frozenset(h.lower() for h in settings.CONCORD_COLLECT_ALLOW_HOSTS),
        allow_networks=parse_networks(settings.CONCORD_COLLECT_ALLOW_CIDRS),
        opt_out=tuple(settings.CONCORD_COLLECT_OPT_OUT),
        ca_bundle=settings.CONCORD_COLLECT_CA_BUNDLE,
    )


def collection_run(
    *, job_id: int, seconds: float | None = None, fetcher: Fetcher | None = None
) -> str:
    """Fetch the job's rows for about ``seconds`` (default CONCORD_COLLECT_RUN_SECONDS; 0 runs
    until done). Returns "done", "paused", "staging" (not read in yet: its reading was queued),
    "stopped" (failed or deleted) or "more" (time is up, rows remain: the task was queued again).

    Two batches overlap: while one batch's rows are written (one transaction), the next is
    already being fetched and checked in the threads. A batch claimed is always written before
    this returns, whatever the job's state has become meanwhile.
    """
    seconds = settings.CONCORD_COLLECT_RUN_SECONDS if seconds is None else seconds
    if fetcher is None:
        # A misconfiguration would fail every row, or crash every task while the job shows
        # "running": the job pauses with the reason instead, and Resume tries again once the
        # settings are fixed (the same words as ``manage.py check``).
        problems = [message for _id, message in collection_settings_problems()]
        if not problems:
            try:
                fetcher = fetcher_default()
            except (OSError, ValueError, ssl.SSLError) as exc:
                problems = [f"{type(exc).__name__}: {exc}"]
        if problems:
            return _pause_misconfigured(job_id=job_id, problems=problems)
    token = uuid.uuid4().hex
    started = time.monotonic()
    threads = max(1, settings.CONCORD_COLLECT_THREADS)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ahead: tuple[list[CollectItem], list] | None = None  # claimed, being fetched
        try:
            while True:
                job = (
                    ImportJob.objects.filter(pk=job_id)
                    .only("status", "project_id", "kind", "rows_total")
                    .first()
                )
                if stop := _stopped(job, job_id):
                    return stop
                items = _claim(job=job, token=token)
                fetching = [pool.submit(_fetch_checked, item, fetcher) for item in items]
                if ahead is not None:
                    _write_when_fetched(job_id=job_id, batch=ahead, token=token)
                ahead = (items, fetching) if items else None
                if ahead is None:
                    if _finish_if_complete(job_id=job_id):
                        return "done"
                    # Nothing claimable: rows wait for a retry time, or others hold them.
                    time.sleep(min(1.0, max(0.05, _seconds_to_next(job_id=job_id))))
                if seconds and time.monotonic() - started >= seconds:
                    if ahead is not None:
                        _write_when_fetched(job_id=job_id, batch=ahead, token=token)
                        ahead = None
                    if _finish_if_complete(job_id=job_id):
                        return "done"
                    enqueue_on_commit(FETCH_TASK, job_id, what=f"collection {job_id}")
                    return "more"
        finally:
            if ahead is not None:
                _write_when_fetched(job_id=job_id, batch=ahead, token=token)


def _pause_misconfigured(*, job_id: int, problems: list[str]) -> str:
    reason = message_text(SETTINGS_WRONG.format(problems=" ".join(problems)), limit=2000)
    logger.error("Collection %s paused: %s", job_id, reason)
    changed = ImportJob.objects.filter(
        pk=job_id, status__in=(ImportStatus.QUEUED, ImportStatus.RUNNING)
    ).update(status=ImportStatus.PAUSED, error=reason, heartbeat_at=timezone.now())
    return "paused" if changed else "stopped"


def _stopped(job: ImportJob | None, job_id: int) -> str:
    """Why a run stops before claiming more, or ""."""
    if job is None or job.status == ImportStatus.FAILED:
        return "stopped"
    if job.status == ImportStatus.DONE:
        return "done"
    if job.status == ImportStatus.PAUSED:
        return "paused"
    if job.rows_total is None:
        # Not read in yet (a recovery sent it here early): reading it starts the fetching.
        enqueue_on_commit(STAGE_TASK, job_id, what=f"collection {job_id}")
        return "staging"
    return ""


def _write_when_fetched(*, job_id: int, batch: tuple[list[CollectItem], list], token: str) -> None:
    items, futures = batch
    results = [future.result() for future in futures]
    _write(job_id=job_id, items=items, results=results, token=token)


def _claimable(now) -> Q:
    stale = now - timedelta(seconds=settings.CONCORD_COLLECT_CLAIM_SECONDS)
    return (
        Q(state=FetchState.PENDING, not_before__isnull=True)
        | Q(state=FetchState.PENDING, not_before__lte=now)
        | Q(state=FetchState.CLAIMED, claimed_at__lt=stale)
    )


def _claim(*, job: ImportJob, token: str) -> list[CollectItem]:
    """Claim up to a batch of this job's rows, within the project's concurrency limit."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CONCORD_COLLECT_CLAIM_SECONDS)
    in_flight = CollectItem.objects.filter(
        job__project_id=job.project_id, state=FetchState.CLAIMED, claimed_at__gte=stale
    ).count()
    limit = min(
        settings.CONCORD_COLLECT_BATCH, settings.CONCORD_COLLECT_PROJECT_CONCURRENCY - in_flight
    )
    if limit <= 0:
        return []
    with transaction.atomic():
        candidates = CollectItem.objects.filter(_claimable(now), job_id=job.pk).order_by("position")
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        # The condition again: on SQLite (no row locks) another claimer may have taken some.
        CollectItem.objects.filter(_claimable(now), pk__in=ids).update(
            state=FetchState.CLAIMED, claimed_by=token, claimed_at=now, attempts=F("attempts") + 1
        )
    return list(
        CollectItem.objects.filter(pk__in=ids, claimed_by=token)
        .select_related("job")
        .order_by("position")
    )


def _fetch_and_write(
    *, job_id: int, items: list[CollectItem], token: str, fetcher: Fetcher
) -> None:
    threads = max(1, min(settings.CONCORD_COLLECT_THREADS, len(items)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda item: _fetch_checked(item, fetcher), items))
    _write(job_id=job_id, items=items, results=results, token=token)


def _fetch_checked(item: CollectItem, fetcher: Fetcher) -> Fetched:
    """Fetch, then run the image checks in this thread too (Pillow releases the GIL while it
    decodes and encodes): the ingest path takes the result instead of checking again. A refusal
    is left for that path to give, with its usual reason."""
    result = _fetch_one(item, fetcher)
    if result.ok:
        try:
            result.checked = check_image(
                result.data,
                max_bytes=settings.CONCORD_MAX_IMAGE_BYTES,
                max_pixels=settings.CONCORD_MAX_IMAGE_PIXELS,
            )
        except ImageRejected:
            pass
        except Exception:
            logger.exception("Collection: checking %s failed", url_redacted(item.url))
    return result


def _fetch_one(item: CollectItem, fetcher: Fetcher) -> Fetched:
    try:
        if item.url.startswith("s3://"):
            result = s3_fetch(s3_client(), item.url, max_bytes=settings.CONCORD_MAX_IMAGE_BYTES)
            sidecar = item.job.kind == ImportKind.BUCKET and not item.job.options.get(
                "captions_key"
            )
            if result.ok and not item.caption and sidecar:
                # A sidecar caption: photo.txt beside photo.jpg.
                bucket, key = s3_split(item.url)
                item.caption = s3_text(s3_client(), bucket, key.rsplit(".", 1)[0] + ".txt") or ""
                if problem := text_problem(item.caption, field="caption"):
                    # The rule and the words of a manifest's caption (not UTF-8, a NUL).
                    item.caption = ""
                    return Fetched(
                        url=item.url, failure=FetchFailure.INVALID, detail=problem, row_problem=True
                    )
            return result
        return fetcher.fetch(item.url)
    except Exception as exc:  # a bug in the fetcher must cost this row only
        logger.exception("Collection fetch of %s failed", url_redacted(item.url))
        return Fetched(url=item.url, failure=FetchFailure.ERROR, detail=type(exc).__name__)


def _write(*, job_id: int, items: list[CollectItem], results: list[Fetched], token: str) -> None:
    """One transaction: the rows through ingest, the items' states, the retries put back."""
    now = timezone.now()
    with transaction.atomic():
        job = ImportJob.objects.select_related("project").get(pk=job_id)
        # Only rows this claim still holds: a row claimed again after our lease ran out is the
        # other worker's to write.
        held = set(
            CollectItem.objects.filter(
                pk__in=[item.pk for item in items], claimed_by=token, state=FetchState.CLAIMED
            )
            .select_for_update()
            .values_list("pk", flat=True)
        )
        rows, retry = [], []
        for item, result in zip(items, results, strict=True):
            if item.pk not in held:
                continue
            if (
                not result.ok
                and result.transient
                and item.attempts < settings.CONCORD_COLLECT_ATTEMPTS
            ):
                retry.append((item, result))
                continue
            rows.append(_row_input(item, result))
        written = import_rows_write(job=job, rows=rows) if rows else {}
        for item, result in retry:
            delay = retry_delay(
                attempts=item.attempts,
                retry_after=result.retry_after,
                base=settings.CONCORD_COLLECT_BACKOFF,
                cap=settings.CONCORD_COLLECT_BACKOFF_CAP,
            )
            CollectItem.objects.filter(pk=item.pk).update(
                state=FetchState.PENDING,
                claimed_by="",
                claimed_at=None,
                not_before=now + timedelta(seconds=delay),
                failure=result.failure,
            )
        by_position = {
            item.position: (item, result) for item, result in zip(items, results, strict=True)
        }
        fetched, failed = [], {}
        for position, row in written.items():
            item, result = by_position[position]
            if row.outcome != RowOutcome.REFUSED:
                fetched.append(item.pk)
            else:
                failed.setdefault(result.failure or FetchFailure.REJECTED, []).append(item.pk)
        if fetched:
            CollectItem.objects.filter(pk__in=fetched).update(
                state=FetchState.FETCHED, failure="", finished_at=now, claimed_by=""
            )
        for failure, pks in failed.items():
            CollectItem.objects.filter(pk__in=pks).update(
                state=FetchState.FAILED, failure=failure, finished_at=now, claimed_by=""
            )
        ImportJob.objects.filter(pk=job_id).update(heartbeat_at=now)


def _row_input(item: CollectItem, result: Fetched) -> RowInput:
    where = row_name(item.position + 1)
    # Credentials in a URL are for fetching it (CollectItem.url) and go no further.
    shown = url_redacted(item.url)
    common = {
        "position": item.position,
        "where": where,
        "name": shown,
        "source": item.job.source,
        "caption": item.caption or None,
        "original_name": file_name_of(shown),
        "source_url": shown,
        "license_name": item.license_name,
        "license_url": url_redacted(item.license_url),
    }
    if result.ok:
        return RowInput(**common, data=result.data, checked=result.checked)
    if result.row_problem:  # the row itself, not the fetch: its own words
        return RowInput(**common, refusal=result.detail)
    label = _LABELS.get(result.failure, result.failure)
    return RowInput(**common, refusal=FETCH_FAILED.format(label=label, detail=result.detail))


def _seconds_to_next(*, job_id: int) -> float:
    soonest = CollectItem.objects.filter(job_id=job_id, state=FetchState.PENDING).aggregate(
        at=Min("not_before")
    )["at"]
    if soonest is None:
        return 0.2
    return (soonest - timezone.now()).total_seconds()


def _finish_if_complete(*, job_id: int) -> bool:
    """Mark the job done once every row has its outcome; True when it is done."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.rows_total is None:
            return False
        if job.status == ImportStatus.DONE:
            return True
        open_rows = CollectItem.objects.filter(
            job_id=job_id, state__in=(FetchState.PENDING, FetchState.CLAIMED)
        ).exists()
        if open_rows or job.status != ImportStatus.RUNNING or job.rows_done < job.rows_total:
            return False
        now = timezone.now()
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportStatus.DONE, finished_at=now, heartbeat_at=now
        )
    return True


# --- pause, resume, retry -------------------------------------------------------------------------


class CollectionRefused(ValueError):
    """A pause, resume or retry the job's state does not allow (400/409 with the reason)."""


def _collection(job: ImportJob) -> None:
    if job.kind not in (ImportKind.COLLECT, ImportKind.BUCKET):
        raise CollectionRefused(NOT_A_COLLECTION)


@transaction.atomic
def collection_pause(*, job: ImportJob) -> ImportJob:
    """Stop claiming rows; rows being fetched now still get their outcome. Raises
    CollectionRefused unless the job is queued or running."""
    _collection(job)
    changed = ImportJob.objects.filter(
        pk=job.pk, status__in=(ImportStatus.QUEUED, ImportStatus.RUNNING)
    ).update(status=ImportStatus.PAUSED)
    if not changed:
        raise CollectionRefused(NOT_PAUSABLE)
    return ImportJob.objects.get(pk=job.pk)


@transaction.atomic
def collection_resume(*, job: ImportJob) -> ImportJob:
    """Queue the job's tasks again: after a pause, or for a running job whose tasks were lost
    (the hook for a periodic recovery of jobs with an old heartbeat). Rows held by a dead worker
    are claimed again once their claim has expired. Raises CollectionRefused for a job that is
    done or failed."""
    _collection(job)
    job = ImportJob.objects.select_for_update().get(pk=job.pk)
    if job.status not in (ImportStatus.PAUSED, ImportStatus.RUNNING, ImportStatus.QUEUED):
        raise CollectionRefused(NOT_RESUMABLE)
    if job.error and job.status == ImportStatus.PAUSED:
        job.error = ""  # the reason it paused (wrong settings): tried again now
        job.save(update_fields=["error"])
    if job.rows_total is None:
        job.status = ImportStatus.QUEUED
        job.save(update_fields=["status"])
        enqueue_on_commit(STAGE_TASK, job.pk, what=f"collection {job.pk}")
    else:
        job.status = ImportStatus.RUNNING
        job.save(update_fields=["status"])
        _start_tasks(job=job)
    return job


def collections_recover(*, now=None) -> list[int]:
    """Running collections whose fetch loops died with their worker (what beat runs every
    minute): a job with rows claimable now and no row claimed or finished within
    CONCORD_COLLECT_CLAIM_SECONDS + CONCORD_COLLECT_RUN_SECONDS has no live loop (a live one
    claims what is claimable within a second, and a dead one's claims expire after the claim
    time), so its tasks are queued again. A job with a live loop is left alone: sending more
    would only add loops. Returns the job ids resumed."""
    now = now or timezone.now()
    quiet = now - timedelta(
        seconds=settings.CONCORD_COLLECT_CLAIM_SECONDS + settings.CONCORD_COLLECT_RUN_SECONDS
    )
    resumed = []
    running = ImportJob.objects.filter(
        kind__in=(ImportKind.COLLECT, ImportKind.BUCKET),
        status=ImportStatus.RUNNING,
        rows_total__isnull=False,
    )
    for job in running:
        items = CollectItem.objects.filter(job=job)
        if items.filter(Q(claimed_at__gte=quiet) | Q(finished_at__gte=quiet)).exists():
            continue
        if not items.filter(_claimable(now)).exists():
            continue
        try:
            collection_resume(job=job)
        except CollectionRefused:
            continue  # paused, finished or failed since it was read
        resumed.append(job.pk)
    return resumed


@transaction.atomic
def collection_retry_failed(*, job: ImportJob) -> int:
    """Put the failed rows (all but those the manifest itself made unusable) back to pending:
    their refused ImportRows are removed and the counters move back, in one transaction, then
    the job runs again. Returns how many rows go back."""
    _collection(job)
    job = ImportJob.objects.select_for_update().get(pk=job.pk)
    if job.status not in (ImportStatus.DONE, ImportStatus.PAUSED, ImportStatus.RUNNING):
        raise CollectionRefused(NOT_RETRYABLE.format(status=job.get_status_display().lower()))
    failed = CollectItem.objects.filter(job=job, state=FetchState.FAILED).exclude(
        failure=FetchFailure.INVALID
    )
    positions = list(failed.values_list("position", flat=True))
    if not positions:
        return 0
    removed = 0
    for start in range(0, len(positions), 5000):
        part = positions[start : start + 5000]
        removed += ImportRow.objects.filter(
            job=job, position__in=part, outcome=RowOutcome.REFUSED
        ).delete()[0]
    failed.update(
        state=FetchState.PENDING,
        attempts=0,
        failure="",
        not_before=None,
        claimed_by="",
        claimed_at=None,
        finished_at=None,
    )
    ImportJob.objects.filter(pk=job.pk).update(
        rows_done=F("rows_done") - removed,
        refused=F("refused") - removed,
        status=ImportStatus.RUNNING if job.status != ImportStatus.PAUSED else ImportStatus.PAUSED,
        finished_at=None,
    )
    if job.status != ImportStatus.PAUSED:
        _start_tasks(job=job)
    return len(positions)


# --- progress -------------------------------------------------------------------------------------


@dataclass
class CollectProgress:
    """Where a collection stands: rows by state, rows a minute lately and overall, failures by
    reason (code → count, most first)."""

    total: int | None
    fetched: int
    failed: int
    pending: int
    in_flight: int
    waiting_retry: int
    per_minute_recent: float
    per_minute_overall: float
    failures: list[tuple[str, str, int]] = field(default_factory=list)  # code, label, count
    # Rows claimed longer ago than any fetch takes (their worker may have died), and when the
    # first of them is taken back by the others (CONCORD_COLLECT_CLAIM_SECONDS after its claim).
    held_long: int = 0
    taken_back_at: datetime | None = None


def collection_progress(*, job: ImportJob, window_seconds: int = 60) -> CollectProgress:
    """The counts the collection page and API show (a few aggregate queries)."""
    now = timezone.now()
    by_state = Counter(
        dict(
            CollectItem.objects.filter(job=job)
            .values_list("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
    )
    waiting = CollectItem.objects.filter(
        job=job, state=FetchState.PENDING, not_before__gt=now
    ).count()
    recent = CollectItem.objects.filter(
        job=job,
        state__in=(FetchState.FETCHED, FetchState.FAILED),
        finished_at__gte=now - timedelta(seconds=window_seconds),
    ).count()
    failures = Counter(
        dict(
            CollectItem.objects.filter(job=job, state=FetchState.FAILED)
            .values_list("failure")
            .annotate(n=Count("id"))
            .values_list("failure", "n")
        )
    )
    # A fetch ends within the total timeout; a claim much older than that is a worker's that
    # stopped or hangs. Resume cannot take those rows back sooner than their claim expires.
    fetch_seconds = settings.CONCORD_COLLECT_TOTAL_TIMEOUT * 2 + 30
    held = CollectItem.objects.filter(
        job=job,
        state=FetchState.CLAIMED,
        claimed_at__lt=now - timedelta(seconds=fetch_seconds),
    ).aggregate(n=Count("id"), first=Min("claimed_at"))
    taken_back_at = (
        held["first"] + timedelta(seconds=settings.CONCORD_COLLECT_CLAIM_SECONDS)
        if held["first"]
        else None
    )
    done = by_state[FetchState.FETCHED] + by_state[FetchState.FAILED]
    end = job.finished_at or now
    elapsed = (end - job.started_at).total_seconds() if job.started_at else 0
    return CollectProgress(
        total=job.rows_total,
        fetched=by_state[FetchState.FETCHED],
        failed=by_state[FetchState.FAILED],
        pending=by_state[FetchState.PENDING],
        in_flight=by_state[FetchState.CLAIMED],
        waiting_retry=waiting,
        per_minute_recent=recent * 60 / window_seconds,
        per_minute_overall=(done * 60 / elapsed) if elapsed > 0 else 0.0,
        failures=[(code, _LABELS.get(code, code), n) for code, n in failures.most_common()],
        held_long=held["n"],
        taken_back_at=taken_back_at,
    )
