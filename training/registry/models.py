"""Model versions: one training run of the matching model on one release of a project."""

from django.db import models
from django.db.models import Q

from datasets.models import Project, Release


class VersionStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    TRAINING = "training", "Training"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    # A manager stopped it (queued or training): nothing of it is kept; Retry trains it again.
    CANCELLED = "cancelled", "Cancelled"


class ModelVersion(models.Model):
    """``config`` is the ``TrainConfig`` dict the run used; ``metrics`` the evaluation per split
    (``{"train": {...}, "val": {...}, "test": {...}}``); ``metric_value`` the validation score
    promotion compares (``TrainConfig.select_metric``, R@1/5/10 summed by default);
    ``history`` the training log, one record per epoch as ``training.core.train`` writes it
    (``epoch``, ``lr``, ``seconds``, mean loss terms under ``train``, validation metrics under
    ``val``, ``best``), filled while the run trains."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="model_versions")
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=VersionStatus.choices, default=VersionStatus.QUEUED
    )
    epochs_done = models.PositiveIntegerField(default=0)
    history = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    metric_name = models.CharField(max_length=40, blank=True)
    metric_value = models.FloatField(null=True, blank=True)
    # The best checkpoint's name in the "models" storage (<slug>/<id>/best.pt) and its SHA-256,
    # which names a worker's local copy of it in the scratch cache.
    checkpoint = models.CharField(max_length=500, blank=True)
    checkpoint_sha256 = models.CharField(max_length=64, blank=True)
    is_promoted = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(is_promoted=True),
                name="training_registry_one_promoted_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} model #{self.pk}"

    @property
    def epochs(self) -> int:
        return int(self.config.get("epochs", 0) or 0)
