"""Read side of the models page: metrics over versions as charts, and per version its progress,
per-split tables, the threshold with the confusion at it, and the training curves.

Rates are stored as fractions and shown as percentages; R-sum, the sum of six recalls, as
points out of 600.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from annotate.agreement.charts import Chart
from datasets.models import Project
from training.registry.charts import Series, line_chart
from training.registry.models import ModelVersion, VersionStatus
from training.registry.services import (
    NightlyPlan,
    default_config,
    model_stopping,
    newest_ready_release,
    nightly_plan,
)

# Ready versions drawn in the charts over versions (the newest ones).
VERSIONS_CHARTED = 30
SPLITS = ("train", "val", "test")
CONFUSION_SPLITS = ("val", "test")
# (metric key, column heading) of the per-split table; rates in percent.
COLUMNS = [
    ("i2t_r1", "I→T R@1"),
    ("i2t_r5", "I→T R@5"),
    ("i2t_r10", "I→T R@10"),
    ("t2i_r1", "T→I R@1"),
    ("t2i_r5", "T→I R@5"),
    ("t2i_r10", "T→I R@10"),
    ("rsum", "R-sum"),
    ("f1", "F1"),
    ("ap", "AP"),
]
HEADINGS = tuple(heading for _, heading in COLUMNS)
LOSS_NAMES = {
    "loss": "total",
    "infonce": "InfoNCE",
    "infonce_i2t": "InfoNCE I→T",
    "infonce_t2i": "InfoNCE T→I",
    "triplet": "triplet",
    "bce": "BCE",
    "hinge": "hinge",
}
RUNNING = (VersionStatus.QUEUED, VersionStatus.TRAINING)
NO_FIGURE = "—"


def percent(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage (``0.371`` → ``37.1%``); ``—`` when unknown."""
    if value is None:
        return NO_FIGURE
    return f"{100 * float(value):.{digits}f}%"


def points(value: Any) -> str:
    """R-sum (six recalls summed, each a fraction) in points out of 600."""
    return NO_FIGURE if value is None else f"{100 * float(value):.1f}"


@dataclass(frozen=True)
class Confusion:
    """The binary match decision on one split at the chosen threshold."""

    split: str
    threshold: float | None
    source: str
    tp: int
    fp: int
    fn: int
    tn: int
    accuracy: str
    precision: str
    recall: str
    f1: str
    synthetic_negatives: bool

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


@dataclass(frozen=True)
class VersionCard:
    version: ModelVersion
    running: bool
    percent_done: int
    rows: list[dict[str, Any]]
    confusions: list[Confusion]
    threshold: float | None
    threshold_source: str
    curves: list[Chart]
    best_epoch: int | None
    last_epoch: dict[str, Any] | None
    score: str
    expanded: bool = False
    headings: tuple[str, ...] = HEADINGS
    stopping: bool = False  # cancelled, its worker still finishing its epoch


@dataclass(frozen=True)
class ModelPage:
    project: Project
    cards: list[VersionCard]
    charts: list[Chart]
    has_release: bool
    nightly: NightlyPlan
    nightly_at: str
    promoted: ModelVersion | None = None
    ready_count: int = 0
    # The header's figures, taken from the cards below it so that the two cannot disagree:
    # (status word, count) for each status present, in the cards' words; the promoted
    # version's card (its score as the card shows it); the metric promotion compares.
    counts: tuple[tuple[str, int], ...] = ()
    promoted_card: VersionCard | None = None
    metric_words: str = ""


def model_page(*, project: Project) -> ModelPage:
    """Everything the models page shows for ``project``, newest version first."""
    versions = list(project.model_versions.select_related("release").order_by("-pk"))
    promoted = next((v for v in versions if v.is_promoted), None)
    ready = [v for v in versions if v.status == VersionStatus.READY]
    # The newest version and the promoted one open their curves; the rest stay folded.
    opened = {versions[0].pk} if versions else set()
    if promoted is not None:
        opened.add(promoted.pk)
    cards = [version_card(version=v, expanded=v.pk in opened) for v in versions]
    return ModelPage(
        project=project,
        cards=cards,
        charts=version_charts(versions=ready[:VERSIONS_CHARTED][::-1]),
        has_release=newest_ready_release(project=project) is not None,
        nightly=nightly_plan(project=project),
        nightly_at=f"{int(getattr(settings, 'CONCORD_NIGHTLY_HOUR', 2)):02d}:00 {settings.TIME_ZONE}",
        promoted=promoted,
        ready_count=len(ready),
        counts=status_counts(cards),
        promoted_card=next((c for c in cards if c.version.is_promoted), None),
        metric_words=metric_words(_select_metric()),
    )


def status_counts(cards: list[VersionCard]) -> tuple[tuple[str, int], ...]:
    """How many cards show each status, in the cards' own words (``("Ready", 2)``), in the
    order of ``VersionStatus``; statuses no card has are left out."""
    shown = [c.version.get_status_display() for c in cards]
    return tuple(
        (label, shown.count(label)) for _, label in VersionStatus.choices if label in shown
    )


def metric_words(name: str) -> str:
    """The validation score promotion compares, said in words (``"rsum"`` → R-sum …)."""
    if name == "rsum":
        return "R-sum: R@1, R@5 and R@10 in both directions, summed, of 600"
    return name.replace("_", " ")


def _select_metric() -> str:
    """The metric a run started now would be promoted on (``TrainConfig.select_metric`` unless
    ``CONCORD_TRAIN_CONFIG`` names another)."""
    from training.core.config import TrainConfig

    return str(default_config().get("select_metric") or TrainConfig.select_metric)


def version_card(*, version: ModelVersion, expanded: bool = False) -> VersionCard:
    """One version's card: progress while it runs, figures once it is ready."""
    metrics = version.metrics or {}
    history = [h for h in version.history or [] if isinstance(h, dict)]
    epochs = version.epochs or 0
    best = [h["epoch"] for h in history if h.get("best")]
    threshold_from = next(
        (
            metrics[s]
            for s in ("val", "test", "train")
            if (metrics.get(s) or {}).get("threshold") is not None
        ),
        {},
    )
    stopping = model_stopping(version=version)
    return VersionCard(
        version=version,
        running=version.status in RUNNING or stopping,
        stopping=stopping,
        percent_done=min(100, version.epochs_done * 100 // epochs) if epochs else 0,
        rows=_rows(metrics),
        confusions=[c for s in CONFUSION_SPLITS if (c := _confusion(s, metrics.get(s)))],
        threshold=threshold_from.get("threshold"),
        threshold_source=threshold_from.get("threshold_source", ""),
        curves=curve_charts(version=version, history=history),
        best_epoch=best[-1] if best else None,
        last_epoch=_epoch_summary(history[-1]) if history else None,
        score=_score(version),
        expanded=expanded,
    )


def _score(version: ModelVersion) -> str:
    """The validation score promotion compares, in the unit of its metric."""
    if version.metric_value is None:
        return ""
    if version.metric_name == "rsum":
        return f"R-sum {points(version.metric_value)} of 600"
    if version.metric_name.endswith("_rank"):
        return f"{version.metric_name} {version.metric_value:.1f}"
    return f"{version.metric_name} {percent(version.metric_value)}"


def _rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for split in SPLITS:
        values = metrics.get(split)
        if not values:
            continue
        cells = [
            points(values.get(key)) if key == "rsum" else percent(values.get(key))
            for key, _ in COLUMNS
        ]
        rows.append(
            {
                "split": split,
                "images": values.get("num_images"),
                "pairs": values.get("num_positive_pairs"),
                "cells": cells,
            }
        )
    return rows


def _confusion(split: str, values: dict[str, Any] | None) -> Confusion | None:
    if not values or any(values.get(k) is None for k in ("tp", "fp", "fn", "tn")):
        return None
    return Confusion(
        split=split,
        threshold=values.get("threshold"),
        source=values.get("threshold_source", ""),
        tp=int(values["tp"]),
        fp=int(values["fp"]),
        fn=int(values["fn"]),
        tn=int(values["tn"]),
        accuracy=percent(values.get("accuracy")),
        precision=percent(values.get("precision")),
        recall=percent(values.get("recall")),
        f1=percent(values.get("f1")),
        synthetic_negatives=bool(values.get("synthetic_negatives")),
    )


def _epoch_summary(record: dict[str, Any]) -> dict[str, Any]:
    val = record.get("val") or {}
    return {
        "epoch": record.get("epoch"),
        "loss": (record.get("train") or {}).get("loss"),
        "i2t_r1": percent(val.get("i2t_r1")),
        "t2i_r1": percent(val.get("t2i_r1")),
        "seconds": record.get("seconds"),
    }


def version_charts(*, versions: list[ModelVersion]) -> list[Chart]:
    """R@1 in both directions, R-sum and the match F1 over ready versions, oldest first, on
    validation and test; the promoted version marked."""
    labels = [f"#{v.pk} {v.release.name}" for v in versions]
    marked = next((i for i, v in enumerate(versions) if v.is_promoted), None)

    def pct(split: str, key: str) -> list[float | None]:
        values = [((v.metrics or {}).get(split) or {}).get(key) for v in versions]
        return [None if x is None else 100 * x for x in values]

    def chart(key: str, title: str, metric: str, **options: Any) -> Chart:
        return line_chart(
            key=key,
            title=title,
            labels=labels,
            series=[
                Series("validation", pct("val", metric), "c2"),
                Series("test", pct("test", metric), "c1"),
            ],
            marked=marked,
            marked_label="promoted",
            empty="No trained model yet",
            **options,
        )

    percent_axis = {"y_max": 100.0, "y_format": "{:.0f}%", "value_format": "{:.1f}%"}
    return [
        chart("versions-i2t-r1", "R@1 image → text, by version", "i2t_r1", **percent_axis),
        chart("versions-t2i-r1", "R@1 text → image, by version", "t2i_r1", **percent_axis),
        chart(
            "versions-rsum",
            "R-sum (R@1+5+10, both directions; of 600), by version",
            "rsum",
            y_max=None,
        ),
        chart("versions-f1", "Match F1 at the threshold, by version", "f1", **percent_axis),
    ]


def curve_charts(*, version: ModelVersion, history: list[dict[str, Any]]) -> list[Chart]:
    """The training log as two charts: mean loss terms per epoch, and validation R@1 (both
    directions) and F1 per epoch; the best epoch (the checkpoint kept) marked."""
    if not history:
        return []
    labels = [str(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    best = [i for i, h in enumerate(history) if h.get("best")]
    marked = best[-1] if best else None
    terms = [t for t in LOSS_NAMES if any(t in (h.get("train") or {}) for h in history)]
    extra = sorted({t for h in history for t in (h.get("train") or {})} - set(LOSS_NAMES))
    colours = ("c1", "c2", "c3", "c4")
    losses = [
        Series(
            LOSS_NAMES.get(term, term.replace("_", " ")),
            [(h.get("train") or {}).get(term) for h in history],
            colours[i % len(colours)],
        )
        for i, term in enumerate(terms + extra)
    ]

    def val(key: str) -> list[float | None]:
        values = [(h.get("val") or {}).get(key) for h in history]
        return [None if x is None else 100 * x for x in values]

    key = f"curves-{version.pk}"
    return [
        line_chart(
            key=f"{key}-loss",
            title="Training loss per epoch (mean over batches)",
            labels=labels,
            series=losses,
            y_format="{:g}",
            value_format="{:.4f}",
            marked=marked,
            marked_label="best",
            empty="No epoch finished yet",
        ),
        line_chart(
            key=f"{key}-val",
            title="Validation per epoch",
            labels=labels,
            series=[
                Series("I→T R@1", val("i2t_r1"), "c1"),
                Series("T→I R@1", val("t2i_r1"), "c2"),
                Series("F1", val("f1"), "c3"),
            ],
            y_max=100.0,
            y_format="{:.0f}%",
            value_format="{:.1f}%",
            marked=marked,
            marked_label="best",
            empty="No validation split",
        ),
    ]
