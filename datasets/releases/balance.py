"""Positive/negative balance of the training split, recorded per row as a weight.

Nothing is deleted or duplicated: every pair stays in the release tables once, and its
``weight`` says how much it counts in training. Two methods, both deterministic:

``undersample``
    Rows of the over-represented label in the training split are kept when a SHA-256 of the
    seed and the pair id falls below the keep fraction (weight 1.0) and dropped otherwise
    (weight 0.0). The choice depends on nothing but the seed and the pair id, so it streams
    (one row at a time, after one count query) and is stable from release to release: a pair
    kept in v1 stays kept in v2 unless the keep fraction shrinks. The kept count is therefore
    binomial around the target, within a fraction of a percent for real splits; the summary
    reports the exact count.
``oversample``
    Rows of the under-represented label get a weight above 1 (the factor that brings the
    weighted ratio to the target); the other label keeps 1.0. A weighted loss is over-sampling
    in expectation, without repeating rows in the files.

Validation and test rows always weigh 1.0: evaluation keeps the natural distribution, and the
summary says what it is. Labels are the aggregated labels (1 match, 0 no match), not pair kinds:
a hard negative people judged matching counts as a positive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from datasets.releases.splits import SPLITS

METHODS = ("none", "undersample", "oversample")
TRAIN = "train"
# Weights are written to every release format; six decimals keep them short and identical
# across formats and machines.
WEIGHT_DIGITS = 6
_FRACTION_BITS = 53

ERROR_UNKNOWN_METHOD = (
    "Unknown balance method {method!r}; expected one of none, undersample, oversample."
)
ERROR_TARGET_RATIO = "The target negatives:positives ratio must be a positive number."
ERROR_LABEL = "Pair {pair_id} has label {label!r}; expected 0 or 1."


@dataclass(frozen=True)
class LabelCounts:
    """Rows per aggregated label."""

    positives: int = 0
    negatives: int = 0

    @property
    def total(self) -> int:
        return self.positives + self.negatives

    @property
    def ratio(self) -> float | None:
        """Negatives per positive, or ``None`` without positives."""
        return self.negatives / self.positives if self.positives else None


@dataclass(frozen=True)
class BalancePlan:
    """How training rows are weighted; :meth:`weight` gives one row's weight.

    ``reduced_label`` is the label whose rows are under-sampled (kept with probability
    ``keep_fraction``) or, for over-sampling, ``boosted_label`` is the label weighted
    ``boost``. ``note`` says why nothing was done when ``applied`` is false.
    """

    method: str
    target_ratio: float | None
    seed: int
    train: LabelCounts
    applied: bool
    reduced_label: int | None = None
    keep_fraction: float = 1.0
    boosted_label: int | None = None
    boost: float = 1.0
    note: str = ""

    def weight(self, *, pair_id: int, label: int, split: str) -> float:
        """The weight of one row; 1.0 outside the training split."""
        if split != TRAIN or not self.applied:
            return 1.0
        if label == self.boosted_label:
            return self.boost
        if label == self.reduced_label:
            fraction = _pair_fraction(seed=self.seed, pair_id=pair_id)
            return 1.0 if fraction < self.keep_fraction else 0.0
        return 1.0


@dataclass(frozen=True)
class BalanceSummary:
    """What balancing did, for the datasheet: the plan, the exact outcome, every split's labels.

    ``natural`` holds each split's rows per label before weighting; ``kept`` the training rows
    with a weight above zero; ``weighted`` the sum of training weights per label.
    """

    plan: BalancePlan
    natural: Mapping[str, LabelCounts]
    kept: LabelCounts
    weighted_positives: float
    weighted_negatives: float

    @property
    def weighted_ratio(self) -> float | None:
        """Negatives per positive in the training split after weighting."""
        if not self.weighted_positives:
            return None
        return self.weighted_negatives / self.weighted_positives

    def describe(self) -> str:
        """A paragraph of plain English saying what was done, as the datasheet prints it."""
        plan = self.plan
        train = self.natural.get(TRAIN, LabelCounts())
        lines = [f"Training split before balancing: {_label_phrase(train)}."]
        if not plan.applied:
            lines.append(f"No balancing was applied: {plan.note}. Every row has weight 1.")
        elif plan.method == "undersample":
            which = _label_name(plan.reduced_label)
            total = train.positives if plan.reduced_label == 1 else train.negatives
            kept = self.kept.positives if plan.reduced_label == 1 else self.kept.negatives
            lines.append(
                f"Target: {plan.target_ratio:g}:1 negatives to positives. {which.capitalize()} "
                f"were under-sampled: {kept:,} of {total:,} kept (weight 1), the rest stay in "
                f"the tables with weight 0. The selection is deterministic: a SHA-256 of seed "
                f"{plan.seed} and the pair id, kept below {plan.keep_fraction:.6f}."
            )
        else:
            which = _label_name(plan.boosted_label)
            lines.append(
                f"Target: {plan.target_ratio:g}:1 negatives to positives. {which.capitalize()} "
                f"were over-sampled by weight: each has weight {plan.boost:g}, every other row 1."
            )
        ratio = self.weighted_ratio
        if plan.applied and ratio is not None:
            lines.append(f"Weighted training ratio: {ratio:.3f} negatives per positive.")
        held_out = [s for s in SPLITS if s != TRAIN and s in self.natural]
        if held_out:
            parts = [f"{s}: {_label_phrase(self.natural[s])}" for s in held_out]
            lines.append(
                "Validation and test are not balanced (weight 1) and keep their natural "
                "distribution — " + "; ".join(parts) + "."
            )
        return " ".join(lines)


@dataclass
class BalanceTally:
    """Counts rows as they stream past :func:`apply_balance`, for :meth:`summary`."""

    natural: dict[str, list[int]] = field(default_factory=dict)
    kept: list[int] = field(default_factory=lambda: [0, 0])
    weighted: list[float] = field(default_factory=lambda: [0.0, 0.0])

    def add(self, *, split: str, label: int, weight: float) -> None:
        """Count one row (label 0 or 1) with its final weight."""
        counts = self.natural.get(split)
        if counts is None:
            counts = self.natural[split] = [0, 0]
        counts[label] += 1
        if split == TRAIN:
            self.weighted[label] += weight
            if weight > 0:
                self.kept[label] += 1

    def summary(self, *, plan: BalancePlan) -> BalanceSummary:
        """The summary of everything counted so far under ``plan``."""
        natural = {
            split: LabelCounts(positives=c[1], negatives=c[0])
            for split, c in sorted(self.natural.items(), key=lambda item: _split_order(item[0]))
        }
        return BalanceSummary(
            plan=plan,
            natural=natural,
            kept=LabelCounts(positives=self.kept[1], negatives=self.kept[0]),
            weighted_positives=round(self.weighted[1], WEIGHT_DIGITS),
            weighted_negatives=round(self.weighted[0], WEIGHT_DIGITS),
        )


def count_labels(*, rows: Iterable[Mapping[str, object]]) -> dict[str, LabelCounts]:
    """Rows per split and label, from rows with ``split`` and ``label`` keys."""
    tally = BalanceTally()
    for row in rows:
        tally.add(split=str(row["split"]), label=_label(row), weight=1.0)
    return dict(tally.summary(plan=_NOT_APPLIED).natural)


def plan_balance(
    *, train: LabelCounts, target_ratio: float | None, method: str, seed: int
) -> BalancePlan:
    """Plan weights that bring the training split to ``target_ratio`` negatives per positive.

    ``train`` is the training split's rows per label (one aggregate query). With ``method``
    ``"none"``, no target, or a class missing, the plan is not applied and says why.
    """
    if method not in METHODS:
        raise ValueError(ERROR_UNKNOWN_METHOD.format(method=method))
    if target_ratio is not None and not target_ratio > 0:
        raise ValueError(ERROR_TARGET_RATIO)
    plan = BalancePlan(
        method=method, target_ratio=target_ratio, seed=seed, train=train, applied=False
    )
    if method == "none" or target_ratio is None:
        return replace(plan, note="the project sets no balancing")
    if not train.positives or not train.negatives:
        return replace(plan, note="the training split lacks positives or negatives")
    natural = train.negatives / train.positives
    if abs(natural - target_ratio) / target_ratio < 1e-9:
        return replace(plan, note="the training split already has the target ratio")
    too_many_negatives = natural > target_ratio
    if method == "undersample":
        if too_many_negatives:
            keep, label = target_ratio * train.positives / train.negatives, 0
        else:
            keep, label = train.negatives / (target_ratio * train.positives), 1
        return replace(plan, applied=True, reduced_label=label, keep_fraction=keep)
    if too_many_negatives:
        boost, label = train.negatives / (target_ratio * train.positives), 1
    else:
        boost, label = target_ratio * train.positives / train.negatives, 0
    return replace(plan, applied=True, boosted_label=label, boost=round(boost, WEIGHT_DIGITS))


def apply_balance(
    *,
    rows: Iterable[MutableMapping[str, object]],
    plan: BalancePlan,
    tally: BalanceTally | None = None,
) -> Iterator[MutableMapping[str, object]]:
    """Yield the rows with ``weight`` set by ``plan``, counting them into ``tally`` if given.

    Rows are updated in place (the service builds a fresh dict per row, and a copy per row
    of a million would only cost time); they need ``pair_id``, ``label`` and ``split``.
    """
    for row in rows:
        label = _label(row)
        split = str(row["split"])
        weight = plan.weight(pair_id=int(row["pair_id"]), label=label, split=split)
        row["weight"] = weight
        if tally is not None:
            tally.add(split=split, label=label, weight=weight)
        yield row


def _pair_fraction(*, seed: int, pair_id: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{pair_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _FRACTION_BITS)) / (1 << _FRACTION_BITS)


def _label(row: Mapping[str, Any]) -> int:
    label = row["label"]
    if label not in (0, 1):
        raise ValueError(ERROR_LABEL.format(pair_id=row.get("pair_id"), label=label))
    return int(label)


def _split_order(split: str) -> tuple[int, str]:
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def _label_name(label: int | None) -> str:
    return "positives" if label == 1 else "negatives"


def _label_phrase(counts: LabelCounts) -> str:
    ratio = counts.ratio
    ratio_text = f"{ratio:.3f} negatives per positive" if ratio is not None else "no positives"
    positives = f"{counts.positives:,} positive{'' if counts.positives == 1 else 's'}"
    negatives = f"{counts.negatives:,} negative{'' if counts.negatives == 1 else 's'}"
    return f"{positives}, {negatives} ({ratio_text})"


_NOT_APPLIED = BalancePlan(
    method="none", target_ratio=None, seed=0, train=LabelCounts(), applied=False
)
