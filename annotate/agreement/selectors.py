"""Read side of the manager's agreement dashboard: the latest figures, their history as charts,
the annotator table and the disputed items waiting for a decision."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from annotate.agreement.charts import (
    Chart,
    ScatterPoint,
    TimePoint,
    bar_chart,
    heatmap_chart,
    scatter_chart,
    time_chart,
)
from annotate.agreement.services.consensus import snapshot_latest, suspended_annotator_ids
from annotate.models import AgreementSnapshot, ItemLabel, ItemStatus, Judgment, Task, TaskKind
from datasets.models import Project

HISTORY = 200
SORTS = {
    "name": lambda row: row["name"].lower(),
    "items": lambda row: row["items_done"],
    "gold": lambda row: _none_last(row["gold_accuracy"]),
    "agreement": lambda row: _none_last(row["consensus_agreement"]),
    "seconds": lambda row: _none_last(row["median_seconds"]),
    "flags": lambda row: len(row["flags"]),
}


@dataclass(frozen=True)
class Dashboard:
    snapshot: AgreementSnapshot | None
    annotators: list[dict]
    sort: str
    descending: bool
    charts: list[Chart]


def dashboard_get(*, project: Project, sort: str = "flags", descending: bool = True) -> Dashboard:
    snapshot = snapshot_latest(project=project)
    history = list(
        AgreementSnapshot.objects.filter(project=project)
        .order_by("-computed_at", "-id")
        .defer("annotator_rows", "kappa_matrix")[:HISTORY]
    )[::-1]
    suspended = suspended_annotator_ids(project=project)
    rows = [
        dict(row, suspended=row["id"] in suspended)
        for row in (snapshot.annotator_rows if snapshot else [])
    ]
    sort = sort if sort in SORTS else "flags"
    rows.sort(key=SORTS[sort], reverse=descending)
    return Dashboard(
        snapshot=snapshot,
        annotators=rows,
        sort=sort,
        descending=descending,
        charts=_charts(snapshot=snapshot, history=history, rows=rows),
    )


def disputed_items(*, project: Project, limit: int = 50) -> QuerySet[ItemLabel]:
    """Items a manager should decide, those that used up their judgments first."""
    judgments = Judgment.objects.select_related("annotator").order_by("id")
    tasks = Task.objects.filter(kind=TaskKind.VERIFY).prefetch_related(
        Prefetch("judgments", queryset=judgments)
    )
    return (
        ItemLabel.objects.filter(
            project=project, adjudicated_label__isnull=True, status=ItemStatus.DISPUTED
        )
        .select_related("pair", "pair__caption", "pair__image")
        .prefetch_related(Prefetch("pair__tasks", queryset=tasks))
        .order_by("-needs_manager", "confidence", "id")[:limit]
    )


def _charts(*, snapshot, history, rows) -> list[Chart]:
    progress = time_chart(
        key="progress",
        title="Progress: items with a final label",
        points=[
            TimePoint(
                at=s.computed_at,
                value=(s.items_agreed + s.items_adjudicated) / s.items_total
                if s.items_total
                else None,
            )
            for s in history
        ],
        y_min=0.0,
        y_max=1.0,
        y_format="{:.0%}",
        value_format="{:.1%}",
    )
    alphas = [s.alpha for s in history if s.alpha is not None]
    alpha = time_chart(
        key="alpha",
        title="Krippendorff's α over time (95% bootstrap interval)",
        points=[
            TimePoint(at=s.computed_at, value=s.alpha, low=s.alpha_low, high=s.alpha_high)
            for s in history
        ],
        y_min=min([0.0, *alphas, *(s.alpha_low for s in history if s.alpha_low is not None)]),
        y_max=1.0,
        y_format="{:.2f}",
    )
    scatter = scatter_chart(
        key="accuracy-speed",
        title="Annotators: accuracy against speed",
        points=[
            ScatterPoint(
                x=row["median_seconds"],
                y=row["gold_accuracy"]
                if row["gold_accuracy"] is not None
                else row["consensus_agreement"],
                label=row["name"],
                cls="suspended" if row["suspended"] else ("flagged" if row["flags"] else ""),
            )
            for row in rows
        ],
        x_label="median seconds per item (log)",
        y_label="gold accuracy (else agreement with others)",
    )
    matrix = snapshot.kappa_matrix if snapshot else {}
    heatmap = heatmap_chart(
        key="kappa",
        title="Cohen's κ between annotators",
        names=matrix.get("names", []),
        values=matrix.get("kappa", []),
    )
    labels = bar_chart(
        key="labels",
        title="Label distribution",
        bars=[
            ("Match", snapshot.labels_match, "match"),
            ("No match", snapshot.labels_no_match, "no-match"),
            (
                "No final label yet",
                snapshot.items_total - snapshot.labels_match - snapshot.labels_no_match,
                "undecided",
            ),
        ]
        if snapshot
        else [],
    )
    statuses = bar_chart(
        key="disputed",
        title="Items by status: disputed ones waiting",
        bars=[
            ("Pending", snapshot.items_pending, "pending"),
            ("Agreed", snapshot.items_agreed, "agreed"),
            ("Disputed, asking more", snapshot.items_disputed, "disputed"),
            ("Waiting for a manager", snapshot.items_waiting, "waiting"),
            ("Adjudicated", snapshot.items_adjudicated, "adjudicated"),
        ]
        if snapshot
        else [],
    )
    return [progress, alpha, scatter, heatmap, labels, statuses]


def _none_last(value: float | None) -> float:
    return float("-inf") if value is None else value
