"""Services for model versions: request a training run, run it, promote the better model.

A run trains on a READY release with ``training.core.train.train``. Nothing comes from or stays
on the worker's own disk: the release's ``pairs.parquet`` and the images the run needs are
fetched from storage into the worker's scratch cache (by content hash), the frozen encoders'
embedding cache is shared through the ``models`` storage, and the checkpoints go to the
``models`` storage under ``<project slug>/<version id>/`` (``last.pt`` after every epoch, so
a run resumes on any worker). Promotion is atomic and only ever replaces the promoted model
with a strictly better one (on the validation metric ``TrainConfig.select_metric``); a failed
run is marked failed and changes nothing else.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from config.celery import enqueue_on_commit
from config.jobs import job_alive, job_cancel, job_heartbeat, job_running, jobs_recover
from config.storage import (
    MODELS,
    StorageDataStore,
    file_sha256,
    scratch_dir,
    scratch_fetch,
    storage,
    storage_delete_tree,
    storage_download,
    storage_read,
    storage_upload,
)
from datasets.models import JobLease, Project, Release, ReleaseStatus
from datasets.releases.services import release_image_sources, release_local_pairs
from training.registry.models import ModelVersion, VersionStatus
from training.registry.signals import model_promoted

logger = logging.getLogger(__name__)

ERROR_NO_RELEASE = "Project {slug} has no ready release to train on; cut one first."
ERROR_NO_CHECKPOINT = "Model #{pk} has no checkpoint."
# What a run leaves in the models storage under <slug>/<version id>/; the first two are what a
# resumed run needs.
CHECKPOINT_FILES = ("last.pt", "best.pt")
RUN_FILES = ("metrics.json", "log.jsonl")


def checkpoint_prefix(*, version: ModelVersion) -> str:
    """Where a version's files live in the ``models`` storage."""
    return f"{version.project.slug}/{version.pk}"


def checkpoint_local(*, version: ModelVersion) -> Path:
    """A local copy of the version's best checkpoint, fetched from the ``models`` storage into
    this worker's scratch cache (named and checked by its SHA-256) unless already there.

    Raises ``ValueError`` without a checkpoint and ``StoredFileError`` when it cannot be read.
    """
    if not version.checkpoint:
        raise ValueError(ERROR_NO_CHECKPOINT.format(pk=version.pk))
    if version.checkpoint_sha256:
        return scratch_fetch(
            alias=MODELS,
            name=version.checkpoint,
            key=version.checkpoint_sha256,
            suffix=".pt",
            verify=True,
        )
    # Versions trained before checkpoints were hashed: fetch, hash, keep it under its hash.
    temporary = scratch_dir("objects") / f".{uuid.uuid4().hex}.pt"
    storage_download(alias=MODELS, name=version.checkpoint, target=temporary)
    sha256 = file_sha256(temporary)
    target = scratch_dir("objects", sha256[:2]) / f"{sha256}.pt"
    temporary.replace(target)
    ModelVersion.objects.filter(pk=version.pk).update(checkpoint_sha256=sha256)
    version.checkpoint_sha256 = sha256
    return target


def run_file(*, version: ModelVersion, name: str) -> bytes:
    """One of a run's stored files (``log.jsonl``, ``metrics.json``…); raises
    ``StoredFileError``."""
    return storage_read(alias=MODELS, name=f"{checkpoint_prefix(version=version)}/{name}")


def _run_dir(*, version: ModelVersion) -> Path:
    """A fresh local folder for the run holding what the storage has of it (a resumed run's
    ``last.pt`` and ``best.pt``): the storage, not this worker's disk, is the truth."""
    folder = scratch_dir("runs", version.project.slug, str(version.pk))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    prefix = checkpoint_prefix(version=version)
    for name in CHECKPOINT_FILES:
        if storage(MODELS).exists(f"{prefix}/{name}"):
            storage_download(alias=MODELS, name=f"{prefix}/{name}", target=folder / name)
    return folder


def _run_store(*, version: ModelVersion, folder: Path, names: tuple[str, ...]) -> None:
    prefix = checkpoint_prefix(version=version)
    for name in names:
        if (folder / name).is_file():
            storage_upload(alias=MODELS, name=f"{prefix}/{name}", source=folder / name)


def default_config() -> dict[str, Any]:
    """The config a run gets when none is given: ``settings.CONCORD_TRAIN_CONFIG`` over the
    ``TrainConfig`` defaults."""
    return dict(getattr(settings, "CONCORD_TRAIN_CONFIG", {}) or {})


def newest_ready_release(*, project: Project) -> Release | None:
    return (
        Release.objects.filter(project=project, status=ReleaseStatus.READY)
        .order_by("-version")
        .first()
    )


def _full_config(config: dict[str, Any] | None, *, project: Project) -> dict[str, Any]:
    """Every ``TrainConfig`` field of ``config`` over the defaults; raises ``ValueError``.

    The text encoder follows the project's language (``text_encoder_for_language``: MiniLM
    for English, USE multilingual v3 for its 16 languages, character n-grams for the rest)
    unless ``CONCORD_TRAIN_CONFIG`` or ``config`` names one.
    """
    from training.core.config import TrainConfig, text_encoder_for_language

    by_language = {"text_encoder": text_encoder_for_language(project.language)}
    return TrainConfig.from_dict(by_language | default_config() | (config or {})).to_dict()


def model_request(
    *,
    project: Project,
    release: Release | None = None,
    config: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> ModelVersion:
    """A queued model version on ``release`` (default: the newest ready one); its training task
    is sent once the row is committed. The one already queued or training when it has the same
    release and settings (``model_request_once``)."""
    return model_request_once(project=project, release=release, config=config, enqueue=enqueue)[0]


def model_request_once(
    *,
    project: Project,
    release: Release | None = None,
    config: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> tuple[ModelVersion, bool]:
    """``model_request``, coalesced: a version of the same release and settings already queued
    or training is returned instead of a new one (a double-clicked "Train now" trains once).
    Returns the version and whether it is new."""
    if release is None:
        release = newest_ready_release(project=project)
    if release is None or release.status != ReleaseStatus.READY:
        raise ValueError(ERROR_NO_RELEASE.format(slug=project.slug))
    # Validate now (a bad config fails the request, not the worker) and store every field.
    full = _full_config(config, project=project)
    with transaction.atomic():
        # The project's row lock (SQLite: the write lock the transaction takes at its start)
        # orders simultaneous requests: the second sees the first's version.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        for live in ModelVersion.objects.filter(
            project=project,
            release=release,
            status__in=[VersionStatus.QUEUED, VersionStatus.TRAINING],
        ):
            if live.config == full:
                return live, False
        version = ModelVersion.objects.create(project=project, release=release, config=full)
        if enqueue:
            model_enqueue(version_id=version.pk)
    return version, True


def model_enqueue(*, version_id: int) -> None:
    """Send the run to a training worker once the version row is committed; if the broker is
    away the version stays queued and `manage.py train` or a retry runs it."""
    enqueue_on_commit(
        "registry.train_model", version_id, what=f"training of model version {version_id}"
    )


def _json_safe(value: Any) -> Any:
    """NaN/inf become None (PostgreSQL's jsonb rejects them); numpy scalars become floats."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


TRAIN = "registry.train_model"
TRAIN_GAVE_UP = (
    "Its worker stopped answering {runs} times in a row (killed, out of memory or the machine "
    "went away): not tried again."
)


ERROR_CANCELLED = "Cancelled by {user}."
STOPPING = "stopping"  # in a cancelled run's lease progress until its worker stops
ERROR_STOPPING = (
    "Model #{pk} is still stopping after the epoch it is in: retry once it shows Cancelled."
)
ERROR_NOT_CANCELLABLE = "Only a queued or training model can be cancelled; model #{pk} is {status}."
ERROR_NOT_RETRYABLE = (
    "Only a failed or cancelled model can be trained again; model #{pk} is {status}."
)


class TrainingCancelled(Exception):
    """The run was cancelled (or taken for dead and sent again) while it trained."""


class TrainingRefused(ValueError):
    """A cancel or retry the version's status does not allow (409 with the reason)."""


def model_train_leased(*, version_id: int) -> ModelVersion | None:
    """``model_train`` as a worker runs it: holding the version's job lease with a heartbeat
    (config.jobs), so a redelivery while it trains does nothing, a run whose worker died is
    found by ``trainings_recover`` (and resumes from its last stored epoch) and a cancel stops
    it after the epoch it is in."""
    what = f"training of model version {version_id}"
    with job_running(TRAIN, str(version_id), version_id, what=what) as lease:
        if lease is None:
            return ModelVersion.objects.filter(pk=version_id).first()
        return model_train(version_id=version_id, lease=lease)


def model_cancel(*, version: ModelVersion, by: AbstractBaseUser) -> ModelVersion:
    """Stop a queued or training run: the version is cancelled at once, and a worker training it
    stops after its current epoch and deletes what it stored (a cancelled version never becomes
    ready or promoted). Raises ``TrainingRefused`` for any other status."""
    error = ERROR_CANCELLED.format(user=by.get_username())
    cancelled = ModelVersion.objects.filter(
        pk=version.pk, status__in=[VersionStatus.QUEUED, VersionStatus.TRAINING]
    ).update(status=VersionStatus.CANCELLED, error=error, finished_at=timezone.now())
    version.refresh_from_db()
    if not cancelled:
        raise TrainingRefused(
            ERROR_NOT_CANCELLABLE.format(pk=version.pk, status=version.get_status_display().lower())
        )
    alive = job_alive(TRAIN, str(version.pk))
    job_cancel(TRAIN, str(version.pk), error=error)
    if alive:
        # Until its worker stops after the epoch it is in, the card says "Cancelling…".
        JobLease.objects.filter(name=TRAIN, key=str(version.pk)).update(progress={STOPPING: True})
    else:
        # No live worker holds the run to delete what it stored (its worker died, or it never
        # started): the cancel deletes it here, or it would stay in storage for good.
        _cancelled_forget(version=version)
    return version


def model_retry(*, version: ModelVersion) -> ModelVersion:
    """Queue a failed or cancelled version's run again (sent after commit); a failed run resumes
    from its last stored epoch, a cancelled one starts afresh. Raises ``TrainingRefused``
    otherwise."""
    if model_stopping(version=version):
        raise TrainingRefused(ERROR_STOPPING.format(pk=version.pk))
    if version.status == VersionStatus.CANCELLED:
        # What a run whose worker died before it saw the cancel had stored.
        _cancelled_forget(version=version)
    queued = ModelVersion.objects.filter(
        pk=version.pk, status__in=[VersionStatus.FAILED, VersionStatus.CANCELLED]
    ).update(status=VersionStatus.QUEUED, error="", finished_at=None)
    version.refresh_from_db()
    if not queued:
        raise TrainingRefused(
            ERROR_NOT_RETRYABLE.format(pk=version.pk, status=version.get_status_display().lower())
        )
    # A fresh count of attempts: the give-up rule counts deaths since the last retry.
    JobLease.objects.filter(name=TRAIN, key=str(version.pk), heartbeat_at=None).update(runs=0)
    model_enqueue(version_id=version.pk)
    return version


def model_stopping(*, version: ModelVersion) -> bool:
    """Whether a cancelled run's worker is still finishing the epoch it is in (the card says
    "Cancelling…" and Retry waits): until it stops, or for its stale time if it died."""
    if version.status != VersionStatus.CANCELLED:
        return False
    lease = JobLease.objects.filter(name=TRAIN, key=str(version.pk)).first()
    if lease is None or not (lease.progress or {}).get(STOPPING) or lease.finished_at is None:
        return False
    stale = settings.CONCORD_JOB_STALE_SECONDS.get(TRAIN, settings.CONCORD_JOB_STALE_SECONDS["*"])
    return lease.finished_at > timezone.now() - timedelta(seconds=stale)


def _cancelled_forget(*, version: ModelVersion) -> None:
    """What a cancelled run stored goes (its checkpoints, its epochs), unless a retry queued it
    again meanwhile: the next run then starts from nothing. The run has stopped: its card no
    longer says "Cancelling…"."""
    JobLease.objects.filter(name=TRAIN, key=str(version.pk), heartbeat_at=None).update(progress={})
    with transaction.atomic():
        still = ModelVersion.objects.select_for_update().filter(
            pk=version.pk, status=VersionStatus.CANCELLED
        )
        if not still.update(epochs_done=0, history=[]):
            return
    try:
        storage_delete_tree(alias=MODELS, prefix=f"{checkpoint_prefix(version=version)}/")
    except Exception:
        logger.exception("Could not delete the stored files of cancelled model %s", version.pk)


def trainings_recover() -> list[int]:
    """Training runs whose worker died (what beat runs every minute): sent again, or failed with
    TRAIN_GAVE_UP after CONCORD_JOB_MAX_RUNS deaths in a row. Returns the version ids acted on."""

    def failed(version_id: int, error: str) -> None:
        ModelVersion.objects.filter(pk=version_id, status=VersionStatus.TRAINING).update(
            status=VersionStatus.FAILED, error=error, finished_at=timezone.now()
        )

    return jobs_recover(
        TRAIN,
        what=lambda version_id: f"training of model version {version_id}",
        gave_up=TRAIN_GAVE_UP,
        on_give_up=failed,
    )


def model_train(
    *,
    version_id: int,
    show_progress: bool = False,
    lease: JobLease | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> ModelVersion | None:
    """Train, evaluate and maybe promote one version. Safe to re-run: a finished (ready, failed
    or cancelled) version is left alone, and an interrupted one resumes from its ``last.pt``.

    After each epoch the run checks that the version is still training (a manager may have
    cancelled it) and, with the worker's job ``lease``, beats its heartbeat and checks the job
    is still its own (a recovery may have sent it again): otherwise it stops there, deleting
    what a cancelled run stored. ``on_epoch(record)`` is called after each stored epoch."""
    from training.core.config import TrainConfig
    from training.core.evaluate import evaluate
    from training.core.train import train

    claimed = ModelVersion.objects.filter(
        pk=version_id, status__in=[VersionStatus.QUEUED, VersionStatus.TRAINING]
    ).update(status=VersionStatus.TRAINING, error="")
    version = ModelVersion.objects.select_related("project", "release").filter(pk=version_id)
    version = version.first()
    if version is None or not claimed:
        return version

    # A resumed run reports only its new epochs: keep the ones before them.
    history = list(version.history or [])

    def on_epoch_recorded(record: dict[str, Any]) -> None:
        nonlocal history
        history = [h for h in history if h.get("epoch", 0) < record["epoch"]]
        history.append(_json_safe(record))
        ModelVersion.objects.filter(pk=version.pk).update(
            epochs_done=record["epoch"], history=history
        )

    run_dir: Path | None = None
    try:
        config = TrainConfig.from_dict(version.config)
        if not config.cache_dir:
            config = dataclasses.replace(config, cache_dir=str(scratch_dir("embeddings")))
        if version.release.status != ReleaseStatus.READY:
            raise ValueError(f"Release {version.release.name} is not ready.")
        release_dir = release_local_pairs(release=version.release)
        store = StorageDataStore(
            images=release_image_sources(release=version.release, pairs_dir=release_dir)
        )
        run_dir = _run_dir(version=version)
        folder = run_dir

        def on_epoch_stored(record: dict[str, Any]) -> None:
            training = ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.TRAINING)
            if not training.exists() or (
                lease is not None and not job_heartbeat(lease, epoch=record["epoch"])
            ):
                raise TrainingCancelled(record["epoch"])
            # Stored before anything else: a run killed after this epoch resumes from it.
            _run_store(version=version, folder=folder, names=(*CHECKPOINT_FILES, "log.jsonl"))
            on_epoch_recorded(record)
            if on_epoch is not None:
                on_epoch(record)

        result = train(
            config,
            release_dir,
            run_dir,
            show_progress=show_progress,
            on_epoch=on_epoch_stored,
            store=store,
        )
        metrics = _json_safe(evaluate(result.checkpoint, release_dir, store=store))
        _run_store(version=version, folder=run_dir, names=(*CHECKPOINT_FILES, *RUN_FILES))
        checkpoint_sha256 = file_sha256(result.checkpoint)
        # Kept in the scratch cache under its hash: mining on this worker fetches nothing.
        cached = scratch_dir("objects", checkpoint_sha256[:2]) / f"{checkpoint_sha256}.pt"
        if not cached.exists():
            shutil.copyfile(result.checkpoint, cached)
    except TrainingCancelled:
        logger.warning("Training of model version %d was cancelled", version.pk)
        _cancelled_forget(version=version)
        version.refresh_from_db()
        return version
    except Exception as exc:
        logger.exception("Training of model version %d failed", version.pk)
        ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.TRAINING).update(
            status=VersionStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        version.refresh_from_db()
        return version
    finally:
        # The storage has everything a rerun needs; the local folder was only scratch.
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)

    value = metrics.get("val", {}).get(config.select_metric)
    with transaction.atomic():
        # The project row lock serialises promotions of concurrent runs.
        Project.objects.select_for_update().filter(pk=version.project_id).first()
        # Cancelled during the last epoch or the evaluation: never ready, nor promoted.
        cancelled = not (
            ModelVersion.objects.select_for_update()
            .filter(pk=version.pk, status=VersionStatus.TRAINING)
            .exists()
        )
        if not cancelled:
            current = ModelVersion.objects.filter(project_id=version.project_id, is_promoted=True)
            current = current.first()
            promote = value is not None and (
                current is None or current.metric_value is None or value > current.metric_value
            )
            if promote and current is not None:
                current.is_promoted = False
                current.save(update_fields=["is_promoted"])
            version.status = VersionStatus.READY
            version.epochs_done = result.epochs_run
            # The checkpoint's log is complete even where a killed run missed a callback.
            version.history = _json_safe(result.history)
            version.metrics = metrics
            version.metric_name = config.select_metric
            version.metric_value = value
            version.checkpoint = f"{checkpoint_prefix(version=version)}/best.pt"
            version.checkpoint_sha256 = checkpoint_sha256
            version.is_promoted = promote
            version.finished_at = timezone.now()
            version.save()
            if promote:
                transaction.on_commit(
                    lambda: model_promoted.send(sender=ModelVersion, version=version)
                )
    if cancelled:
        logger.warning("Model version %d was cancelled as it finished", version.pk)
        _cancelled_forget(version=version)
        version.refresh_from_db()
    return version


def promoted_version(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_promoted=True).first()


# --- nightly ---------------------------------------------------------------------------------

NIGHTLY_CUT, NIGHTLY_TRAIN, NIGHTLY_SKIP = "cut", "train", "skip"
NIGHTLY_NO_RELEASE = "no release yet"
NIGHTLY_CHANGED = "labels changed since {release}"
NIGHTLY_NO_PAIRS = "the project has no pairs to release yet"
NIGHTLY_NO_POSITIVES = "{release} has no positive pairs in its train split"
NIGHTLY_BUSY = "model #{pk} on {release} is still {status}"
NIGHTLY_DONE = "model #{pk} already trained on {release} with this config"
NIGHTLY_RELEASE_FAILED = "release {release} failed: {error}"
NIGHTLY_BAD_CONFIG = "CONCORD_TRAIN_CONFIG is not a valid training config: {error}"
NIGHTLY_ERROR = "{error}"


@dataclass(frozen=True)
class NightlyPlan:
    """What the nightly job does for one project: ``cut`` a new release and train on it, ``train``
    on ``release``, or ``skip``; ``reason`` says why in words a manager reads on the models page."""

    action: str
    release: Release | None = None
    reason: str = ""


@dataclass(frozen=True)
class NightlyOutcome:
    """What the nightly job did for one project (the task's record of the night)."""

    project: Project
    action: str
    release: Release | None = None
    version: ModelVersion | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project.slug,
            "action": self.action,
            "release": self.release.name if self.release is not None else None,
            "version": self.version.pk if self.version is not None else None,
            "reason": self.reason,
        }


def labels_changed_since(*, project: Project, release: Release) -> bool:
    """Whether anything that decides a release's pairs or labels is newer than ``release``'s
    snapshot: new pairs (imports, captions, proposed negatives), judgments, gold items,
    adjudications, or an edit of the project's settings (trusted sources, splits, balance).

    Conservative: a judgment that changes no aggregated label still counts, so the worst case
    is one release more than needed, never a stale one.
    """
    from annotate.models import ItemLabel, Judgment, Task
    from datasets.models import Pair

    since = release.snapshot_at
    return (
        project.updated_at > since
        or Pair.objects.filter(image__project=project, created_at__gt=since).exists()
        or Judgment.objects.filter(task__project=project, created_at__gt=since).exists()
        or Task.objects.filter(project=project, is_gold=True, created_at__gt=since).exists()
        or ItemLabel.objects.filter(project=project, adjudicated_at__gt=since).exists()
    )


def _train_positives(release: Release) -> int | None:
    """Positive pairs in the release's train split, by its build counts; None if not recorded."""
    split = ((release.counts or {}).get("splits") or {}).get("train") or {}
    positives = split.get("positives")
    return None if positives is None else int(positives)


def nightly_plan(*, project: Project) -> NightlyPlan:
    """Decide tonight's work for ``project`` without changing anything.

    A new release is cut when there is none or the labels changed since the newest one; else
    the newest ready release is trained on, unless a version with the current default config
    is already trained, queued or running on it (retraining the same data with the same seed
    gives the same model).
    """
    from datasets.models import Pair

    release = newest_ready_release(project=project)
    if release is None or labels_changed_since(project=project, release=release):
        if not Pair.objects.filter(image__project=project).exists():
            return NightlyPlan(NIGHTLY_SKIP, release, NIGHTLY_NO_PAIRS)
        reason = NIGHTLY_NO_RELEASE if release is None else NIGHTLY_CHANGED
        return NightlyPlan(NIGHTLY_CUT, release, reason.format(release=release and release.name))
    if _train_positives(release) == 0:
        return NightlyPlan(NIGHTLY_SKIP, release, NIGHTLY_NO_POSITIVES.format(release=release.name))
    active = [VersionStatus.QUEUED, VersionStatus.TRAINING]
    busy = ModelVersion.objects.filter(release=release, status__in=active).order_by("pk").first()
    if busy is not None:
        reason = NIGHTLY_BUSY.format(
            pk=busy.pk, release=release.name, status=busy.get_status_display().lower()
        )
        return NightlyPlan(NIGHTLY_SKIP, release, reason)
    try:
        config = _json_safe(_full_config(None, project=project))
    except (TypeError, ValueError) as exc:
        return NightlyPlan(NIGHTLY_SKIP, release, NIGHTLY_BAD_CONFIG.format(error=exc))
    for done in ModelVersion.objects.filter(release=release, status=VersionStatus.READY):
        if done.config == config:
            reason = NIGHTLY_DONE.format(pk=done.pk, release=release.name)
            return NightlyPlan(NIGHTLY_SKIP, release, reason)
    return NightlyPlan(NIGHTLY_TRAIN, release)


def _release_cut(*, project: Project) -> Release:
    """Cut and build a release with the manager form's defaults, here in this process."""
    from datasets.releases.services import release_build, release_options, release_request

    options = release_options(project=project)
    release = release_request(project=project, user=None, options=options, enqueue=False)
    built = release_build(release_id=release.pk)
    return built if built is not None else release


def nightly_project(*, project: Project) -> NightlyOutcome:
    """Carry out :func:`nightly_plan` for one project: cut a release if needed (built in this
    process), then queue a training run on it. Never raises; a failure is the outcome's reason."""
    plan = nightly_plan(project=project)
    release = plan.release
    if plan.action == NIGHTLY_SKIP:
        return NightlyOutcome(project, NIGHTLY_SKIP, release, reason=plan.reason)
    try:
        if plan.action == NIGHTLY_CUT:
            release = _release_cut(project=project)
            if release.status != ReleaseStatus.READY:
                reason = NIGHTLY_RELEASE_FAILED.format(release=release.name, error=release.error)
                return NightlyOutcome(project, NIGHTLY_SKIP, release, reason=reason)
            if _train_positives(release) == 0:
                reason = NIGHTLY_NO_POSITIVES.format(release=release.name)
                return NightlyOutcome(project, NIGHTLY_SKIP, release, reason=reason)
        with transaction.atomic():
            version = model_request(project=project, release=release)
    except Exception as exc:
        logger.exception("Nightly retraining of %s failed", project.slug)
        reason = NIGHTLY_ERROR.format(error=f"{type(exc).__name__}: {exc}")
        return NightlyOutcome(project, NIGHTLY_SKIP, release, reason=reason)
    return NightlyOutcome(project, plan.action, release, version, plan.reason)


def nightly_retrain() -> list[NightlyOutcome]:
    """Beat's nightly job: for every project, cut or take the newest release and queue a
    training run on it (see :func:`nightly_plan`); each project's outcome is logged."""
    outcomes = []
    for project in Project.objects.order_by("pk"):
        outcome = nightly_project(project=project)
        if outcome.version is not None:
            logger.info(
                "Nightly: %s model #%d queued on %s%s",
                project.slug,
                outcome.version.pk,
                outcome.release.name if outcome.release else "?",
                f" ({outcome.reason})" if outcome.reason else "",
            )
        else:
            logger.info("Nightly: %s skipped: %s", project.slug, outcome.reason)
        outcomes.append(outcome)
    return outcomes
