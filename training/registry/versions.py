"""Services for model versions: request a training run, run it, promote the better model.

A run trains on a READY release's directory with ``training.train.train`` and writes its
checkpoints under ``settings.CONCORD_MODELS_ROOT/<project slug>/<version id>/``. Promotion is
atomic and only ever replaces the promoted model with a strictly better one (on the validation
metric ``TrainConfig.select_metric``); a failed run is marked failed and changes nothing else.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from datasets.models import Project, Release, ReleaseStatus
from datasets.releases import release_directory
from training.registry.models import ModelVersion, VersionStatus

logger = logging.getLogger(__name__)

ERROR_NO_RELEASE = "Project {slug} has no ready release to train on; cut one first."


def models_root() -> Path:
    return Path(getattr(settings, "CONCORD_MODELS_ROOT", Path(settings.VAR_DIR) / "models"))


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


def model_request(
    *,
    project: Project,
    release: Release | None = None,
    config: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> ModelVersion:
    """A queued model version on ``release`` (default: the newest ready one); its training task
    is sent once the row is committed."""
    from training.config import TrainConfig

    if release is None:
        release = newest_ready_release(project=project)
    if release is None or release.status != ReleaseStatus.READY:
        raise ValueError(ERROR_NO_RELEASE.format(slug=project.slug))
    # Validate now (a bad config fails the request, not the worker) and store every field.
    full = TrainConfig.from_dict(default_config() | (config or {})).to_dict()
    version = ModelVersion.objects.create(project=project, release=release, config=full)
    if enqueue:
        model_enqueue(version_id=version.pk)
    return version


def model_enqueue(*, version_id: int) -> None:
    from training.registry.tasks import train_model

    def send() -> None:
        try:
            train_model.delay(version_id)
        except Exception:
            # The version stays queued; `manage.py train` or a retry runs it.
            logger.exception("Could not enqueue training of model version %d", version_id)

    transaction.on_commit(send)


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


def model_train(*, version_id: int, show_progress: bool = False) -> ModelVersion | None:
    """Train, evaluate and maybe promote one version. Safe to re-run: a finished version is left
    alone, and an interrupted one resumes from its ``last.pt``."""
    from training.config import TrainConfig
    from training.evaluate import evaluate
    from training.train import train

    version = ModelVersion.objects.select_related("project", "release").filter(pk=version_id)
    version = version.first()
    if version is None or version.status in (VersionStatus.READY, VersionStatus.FAILED):
        return version
    version.status, version.error = VersionStatus.TRAINING, ""
    version.save(update_fields=["status", "error"])

    def on_epoch(record: dict[str, Any]) -> None:
        ModelVersion.objects.filter(pk=version.pk).update(epochs_done=record["epoch"])

    try:
        config = TrainConfig.from_dict(version.config)
        release_dir = release_directory(release=version.release)
        if release_dir is None or version.release.status != ReleaseStatus.READY:
            raise ValueError(f"Release {version.release.name} is not ready.")
        out_dir = models_root() / version.project.slug / str(version.pk)
        result = train(config, release_dir, out_dir, show_progress=show_progress, on_epoch=on_epoch)
        metrics = _json_safe(evaluate(result.checkpoint, release_dir))
    except Exception as exc:
        logger.exception("Training of model version %d failed", version.pk)
        ModelVersion.objects.filter(pk=version.pk).update(
            status=VersionStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        version.refresh_from_db()
        return version

    value = metrics.get("val", {}).get(config.select_metric)
    with transaction.atomic():
        # The project row lock serialises promotions of concurrent runs.
        Project.objects.select_for_update().filter(pk=version.project_id).first()
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
        version.metrics = metrics
        version.metric_name = config.select_metric
        version.metric_value = value
        version.checkpoint = str(result.checkpoint)
        version.is_promoted = promote
        version.finished_at = timezone.now()
        version.save()
    return version


def promoted_version(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_promoted=True).first()


def nightly_retrain() -> list[ModelVersion]:
    """Queue one training run per project on its newest ready release; projects without one, or
    whose newest release already has a queued or running version, are skipped."""
    requested = []
    for project in Project.objects.order_by("pk"):
        release = newest_ready_release(project=project)
        if release is None:
            continue
        busy = ModelVersion.objects.filter(
            release=release, status__in=[VersionStatus.QUEUED, VersionStatus.TRAINING]
        )
        if busy.exists():
            continue
        with transaction.atomic():
            requested.append(model_request(project=project, release=release))
    return requested
