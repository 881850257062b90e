"""Read side of the manager's agreement dashboard: the latest figures, their history as charts,
the annotator table and the disputed items waiting for a decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, TextChoices

from annotate.agreement.charts import (
    Chart,
    ScatterPoint,
    TimePoint,
    bar_chart,
    heatmap_chart,
    scatter_chart,
    time_chart,
)
from annotate.agreement.services.consensus import (
    max_judgments,
    snapshot_latest,
    suspended_annotator_ids,
)
from annotate.models import (
    AgreementSnapshot,
    ChallengeMark,
    ChallengeOption,
    ItemLabel,
    Judgment,
    Task,
    TaskKind,
)
from datasets.models import Pair, Project

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
    final_labels: int = 0  # items with a final label: match or no match, however it came
    known_labels: int = 0  # of them, neither agreed nor decided: gold answers, trusted positives


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
        final_labels=_final_labels(snapshot) if snapshot else 0,
        known_labels=(
            max(0, _final_labels(snapshot) - snapshot.items_agreed - snapshot.items_adjudicated)
            if snapshot
            else 0
        ),
    )


def _final_labels(snapshot: AgreementSnapshot) -> int:
    """Items whose pair has a final label: the same count as the label distribution's bars."""
    return snapshot.labels_match + snapshot.labels_no_match


class ItemState(TextChoices):
    """The one state of an item (a pair under verification) that a person sees and acts on.

    Every item label is in exactly one: the filters below partition them. ``adjudicated``
    includes pairs made gold (their answer is known)."""

    WAITING = "waiting", "Waiting for a manager"
    DISPUTED = "disputed", "Disputed, asking more annotators"
    PENDING = "pending", "Pending"
    AGREED = "agreed", "Agreed"
    # Gold pairs count here too (their answer is known): the agreement page's "decided by a
    # manager" counts adjudications alone, so the page says both.
    ADJUDICATED = "adjudicated", "Decided (by a manager, or a gold answer)"


def _decided() -> Q:
    gold = Task.objects.filter(pair_id=OuterRef("pair_id"), kind=TaskKind.VERIFY, is_gold=True)
    return Q(adjudicated_label__isnull=False) | Q(Exists(gold))


def _state_filter(state: str) -> Q:
    if state == ItemState.ADJUDICATED:
        return _decided()
    undecided = ~_decided()
    if state == ItemState.WAITING:
        return undecided & Q(needs_manager=True)
    return undecided & Q(needs_manager=False, status=state)


def items_in_state(*, project: Project, state: str) -> QuerySet[ItemLabel]:
    """The project's item labels in one state (see ItemState), decided ones newest first,
    others those with the least confidence first. Raises ValueError for an unknown state."""
    if state not in ItemState.values:
        raise ValueError(f"Unknown item state {state!r}.")
    order = {
        ItemState.ADJUDICATED: ("-adjudicated_at", "id"),
        ItemState.PENDING: ("-judgments", "id"),
        ItemState.AGREED: ("-updated_at", "id"),
    }.get(state, ("confidence", "id"))
    return ItemLabel.objects.filter(_state_filter(state), project=project).order_by(*order)


def item_state_counts(*, project: Project) -> dict[str, int]:
    """How many item labels are in each state, in ItemState's order."""
    return {
        state: ItemLabel.objects.filter(_state_filter(state), project=project).count()
        for state in ItemState.values
    }


@dataclass(frozen=True)
class ItemView:
    """One item as the manager's list shows it: its label, state, why, and every answer."""

    item: ItemLabel
    state: str
    reason: str
    answers: list[dict]


# The item lists' query (the Disputed page): only ``state``, reported like the data browser's
# filters (datasets/browse/filters.py): the parameter by name, and why.
STATE_PARAM = "state"
UNKNOWN_PARAM = "Unknown filter."
BAD_STATE = "Must be one of: {choices}."


class ItemsQueryError(ValueError):
    """A query parameter of the item lists that cannot be used: ``param`` names it (printable,
    at most 50 characters), ``message`` says why."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


def items_state_parse(params: Mapping[str, str]) -> str:
    """The state the item lists' query asks for: one of ItemState, or "" for the items to
    decide. Any other parameter, and any other value (a NUL byte, a lone surrogate, a megabyte,
    a misspelt word), raises ItemsQueryError naming it, instead of quietly showing another list.
    """
    for name in sorted(params):
        if name != STATE_PARAM:
            raise ItemsQueryError(_printable(name), UNKNOWN_PARAM)
    state = params.get(STATE_PARAM, "")
    if state and state not in ItemState.values:
        raise ItemsQueryError(STATE_PARAM, BAD_STATE.format(choices=", ".join(ItemState.values)))
    return state


def _printable(name: str) -> str:
    name = name.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    return name.replace("\x00", "\\0")[:50]


def items_listed(
    *, project: Project, state: str, limit: int = 50, offset: int = 0
) -> list[ItemView]:
    """One page of items in ``state`` (``limit`` of them after the first ``offset``), each with
    the reason for its state and every answer given on it: verification judgments and marks
    given in challenge items alike."""
    judgments = Judgment.objects.select_related("annotator").order_by("id")
    tasks = Task.objects.filter(kind=TaskKind.VERIFY).prefetch_related(
        Prefetch("judgments", queryset=judgments)
    )
    marks = ChallengeMark.objects.select_related("judgment__annotator").order_by("judgment_id")
    options = (
        ChallengeOption.objects.filter(is_check=False)
        .select_related("task")
        .prefetch_related(Prefetch("marks", queryset=marks))
    )
    items = list(
        items_in_state(project=project, state=state)
        .select_related("pair", "pair__caption", "pair__image", "adjudicated_by")
        .prefetch_related(
            Prefetch("pair__tasks", queryset=tasks),
            Prefetch("pair__challenge_options", queryset=options),
        )[offset : offset + limit]
    )
    limit_judgments = max_judgments(project)
    return [
        ItemView(
            item=item,
            state=state,
            reason=_reason(item=item, state=state, limit=limit_judgments),
            answers=_answers(item),
        )
        for item in items
    ]


def disputed_items(*, project: Project, limit: int = 50) -> list[ItemView]:
    """Items a manager should decide: those waiting for a manager first, then disputed ones."""
    waiting = items_listed(project=project, state=ItemState.WAITING, limit=limit)
    return waiting + items_listed(
        project=project, state=ItemState.DISPUTED, limit=max(0, limit - len(waiting))
    )


def _answers(item: ItemLabel) -> list[dict]:
    answers = [
        {
            "label": judgment.get_answer_display(),
            "annotator": judgment.annotator.username,
            "seconds": judgment.seconds,
            "via": "",
            "gold": task.is_gold,
        }
        for task in item.pair.tasks.all()
        for judgment in task.judgments.all()
    ]
    answers += [
        {
            "label": "Match (marked)" if mark.marked else "No match (not marked)",
            "annotator": mark.judgment.annotator.username,
            "seconds": mark.judgment.seconds,
            "via": "in a challenge item",
            "gold": False,
        }
        for option in item.pair.challenge_options.all()
        for mark in option.marks.all()
    ]
    return answers


def _unsure_note(item: ItemLabel) -> str:
    answers = _answers(item)
    if len(answers) > item.judgments:
        return " (unsure answers, repeats and suspended annotators' do not count)"
    return ""


def _reason(*, item: ItemLabel, state: str, limit: int) -> str:
    # The slots this item can still get: its own task's, or those of the challenge showing it.
    tasks = [task for task in item.pair.tasks.all() if task.kind == TaskKind.VERIFY]
    tasks += [option.task for option in item.pair.challenge_options.all()]
    if state == ItemState.ADJUDICATED:
        if item.adjudicated_label is None:
            return "A gold item: its answer is known."
        who = item.adjudicated_by.username if item.adjudicated_by else "a manager"
        return f"Decided by {who}."
    votes = f"{item.judgments} vote{'s' if item.judgments != 1 else ''}"
    if state == ItemState.WAITING:
        if item.sent_to_manager:
            return f"Sent to a manager from the data browser ({votes} so far)."
        if item.judgments == 0:
            return f"Every answer was unsure ({votes}); only you can decide it."
        return (
            f"{votes} without agreement, and no more judgments can come (the most per item is "
            f"{limit}, or no annotator is left who has not seen it): your decision is needed."
        )
    if state == ItemState.DISPUTED:
        return f"{votes} without agreement: asking one more annotator at a time, up to {limit}."
    if state == ItemState.AGREED:
        if item.mv_share is not None and item.judgments:
            behind = round(item.mv_share * item.judgments)
            if item.mv_label == item.label:
                return f"Agreed: {behind} of {votes} for it."
            return f"Agreed by Dawid–Skene's weighting of the annotators ({votes}; the majority says otherwise)."
        return f"Agreed ({votes})."
    # What the queue still asks for: the open slots of the item's task (its judgments, unsure
    # ones included, against its target), which is target − votes unless answers were unsure.
    open_slots = [task.target - task.judgment_count for task in tasks if not task.is_gold]
    missing = max(open_slots, default=0)
    if missing > 0:
        unsure = _unsure_note(item)
        return (
            f"{votes} so far{unsure}; waiting for {missing} more "
            f"judgment{'s' if missing != 1 else ''}."
        )
    return (
        f"{votes} so far (unsure answers and suspended annotators' do not count); one more "
        "judgment is asked for at the next recompute."
    )


def _charts(*, snapshot, history, rows) -> list[Chart]:
    progress = time_chart(
        key="progress",
        title="Progress: items with a final label",
        points=[
            TimePoint(
                at=s.computed_at,
                value=_final_labels(s) / s.items_total if s.items_total else None,
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
        title="Items by status at the last recompute (gold pairs left out: their answer is known)",
        bars=[
            ("No answer yet", _items_unanswered(snapshot), "undecided"),
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


def _items_unanswered(snapshot: AgreementSnapshot) -> int:
    """Items nobody has answered yet: the rest of items_total once every state is counted
    (the states partition the answered items; unanswered ones have no item row)."""
    counted = (
        snapshot.items_pending
        + snapshot.items_agreed
        + snapshot.items_disputed
        + snapshot.items_waiting
        + snapshot.items_adjudicated
    )
    return max(0, snapshot.items_total - counted)


def _none_last(value: float | None) -> float:
    return float("-inf") if value is None else value


def adjudication_of(*, pair: Pair) -> tuple[int, str] | None:
    """A pair's standing adjudication: (label 0/1, the deciding manager's username, "" when
    the account is gone), or None when no manager has decided it."""
    row = (
        ItemLabel.objects.filter(pair=pair, adjudicated_label__isnull=False)
        .values_list("adjudicated_label", "adjudicated_by__username")
        .first()
    )
    return None if row is None else (int(row[0]), row[1] or "")
