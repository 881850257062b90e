"""A seeded crowd of simulated annotators of known reliability, and scoring against the truth.

The ``simulate_crowd`` management command draws annotators with :func:`simulate_annotators`
and answers each task the queue hands out with :func:`simulate_answer`; tests and the
benchmark draw a whole judgment table at once with :func:`simulate_judgments`, which follows
the same answer model. Nothing here touches the database, and the same seed gives the same
crowd and the same answers.

Kinds of annotator:

- ``good``: answers correctly with probability drawn from ``good_accuracy``;
- ``sloppy``: the same with the lower ``sloppy_accuracy``, and faster;
- ``random_spammer``: picks a label uniformly at random, very fast;
- ``constant_spammer``: gives the same label to everything, very fast.

A wrong answer from a good or sloppy annotator is one of the other labels, uniformly.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from annotate.agreement.aggregation import ANNOTATOR, ITEM, LABEL
from annotate.agreement.annotators import SECONDS

INVALID_FRACTIONS = (
    "Spammer and sloppy fractions must each lie in [0, 1] and add up to at most 1, "
    "got {spammers} and {sloppy}."
)
INVALID_ANNOTATOR_COUNT = "A crowd needs at least one annotator, got {annotators}."
TOO_MANY_JUDGMENTS = (
    "An item can get at most one judgment per annotator: {wanted} judgments asked for one item "
    "but the crowd has {annotators} annotators."
)
JUDGMENT_COUNTS_SHAPE = "Give one judgment count per item: {counts} counts for {items} items."
UNKNOWN_TRUE_LABEL = "True label {label!r} is not among the crowd's labels {labels}."


class AnnotatorKind(StrEnum):
    GOOD = "good"
    SLOPPY = "sloppy"
    RANDOM_SPAMMER = "random_spammer"
    CONSTANT_SPAMMER = "constant_spammer"


@dataclass(frozen=True)
class CrowdSpec:
    """How many annotators of each kind, and how good and how fast each kind is.

    ``constant_spammer_share`` is the part of the spammers who always give the same answer;
    the rest answer at random. Accuracies and median seconds per item are drawn uniformly from
    the given ranges for each annotator.
    """

    annotators: int
    spammer_fraction: float = 0.0
    sloppy_fraction: float = 0.1
    constant_spammer_share: float = 0.5
    good_accuracy: tuple[float, float] = (0.9, 0.98)
    sloppy_accuracy: tuple[float, float] = (0.6, 0.75)
    good_seconds: tuple[float, float] = (3.0, 8.0)
    sloppy_seconds: tuple[float, float] = (1.5, 4.0)
    spammer_seconds: tuple[float, float] = (0.4, 1.2)
    labels: tuple[int, ...] = (0, 1)


@dataclass(frozen=True)
class SimulatedAnnotator:
    """One simulated annotator; ``accuracy`` is ``nan`` for spammers, whose answers ignore
    the truth, and ``constant_label`` is set only for constant spammers."""

    annotator: int
    kind: AnnotatorKind
    accuracy: float
    median_seconds: float
    constant_label: int | None = None


# Spread of one annotator's seconds per item around their median (log scale).
_SECONDS_SPREAD = 0.4


def simulate_annotators(*, spec: CrowdSpec, seed: int) -> list[SimulatedAnnotator]:
    """Draw the crowd described by ``spec``, annotators numbered 0 … N−1 in random kind order."""
    if spec.annotators < 1:
        raise ValueError(INVALID_ANNOTATOR_COUNT.format(annotators=spec.annotators))
    if not (
        0 <= spec.spammer_fraction <= 1
        and 0 <= spec.sloppy_fraction <= 1
        and spec.spammer_fraction + spec.sloppy_fraction <= 1
    ):
        raise ValueError(
            INVALID_FRACTIONS.format(spammers=spec.spammer_fraction, sloppy=spec.sloppy_fraction)
        )
    rng = np.random.default_rng(seed)
    spammers = round(spec.annotators * spec.spammer_fraction)
    constant = round(spammers * spec.constant_spammer_share)
    sloppy = min(round(spec.annotators * spec.sloppy_fraction), spec.annotators - spammers)
    kinds = (
        [AnnotatorKind.CONSTANT_SPAMMER] * constant
        + [AnnotatorKind.RANDOM_SPAMMER] * (spammers - constant)
        + [AnnotatorKind.SLOPPY] * sloppy
        + [AnnotatorKind.GOOD] * (spec.annotators - spammers - sloppy)
    )
    crowd = []
    for annotator, position in enumerate(rng.permutation(len(kinds))):
        kind = kinds[position]
        if kind is AnnotatorKind.GOOD:
            accuracy, seconds = rng.uniform(*spec.good_accuracy), rng.uniform(*spec.good_seconds)
        elif kind is AnnotatorKind.SLOPPY:
            accuracy = rng.uniform(*spec.sloppy_accuracy)
            seconds = rng.uniform(*spec.sloppy_seconds)
        else:
            accuracy, seconds = np.nan, rng.uniform(*spec.spammer_seconds)
        constant_label = (
            int(rng.choice(spec.labels)) if kind is AnnotatorKind.CONSTANT_SPAMMER else None
        )
        crowd.append(
            SimulatedAnnotator(
                annotator=annotator,
                kind=kind,
                accuracy=float(accuracy),
                median_seconds=float(seconds),
                constant_label=constant_label,
            )
        )
    return crowd


def simulate_answer(
    *,
    annotator: SimulatedAnnotator,
    true_label: int,
    labels: Sequence[int],
    rng: np.random.Generator,
) -> tuple[int, float]:
    """One answer and the seconds it took, for the management command's task-by-task loop."""
    if true_label not in labels:
        raise ValueError(UNKNOWN_TRUE_LABEL.format(label=true_label, labels=list(labels)))
    seconds = annotator.median_seconds * float(np.exp(rng.normal(0.0, _SECONDS_SPREAD)))
    if annotator.kind is AnnotatorKind.CONSTANT_SPAMMER:
        return int(annotator.constant_label), seconds
    if annotator.kind is AnnotatorKind.RANDOM_SPAMMER:
        return int(rng.choice(labels)), seconds
    if rng.random() < annotator.accuracy:
        return int(true_label), seconds
    others = [label for label in labels if label != true_label]
    return int(rng.choice(others)), seconds


def simulate_truth(*, items: int, positive_share: float = 0.5, seed: int) -> pd.Series:
    """True labels for items 0 … items−1: 1 (match) with probability ``positive_share``."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(items) < positive_share).astype(np.int64)
    return pd.Series(truth, index=pd.RangeIndex(items, name=ITEM), name=LABEL)


def simulate_judgments(
    *,
    truth: pd.Series,
    crowd: Sequence[SimulatedAnnotator],
    judgments_per_item: int | np.ndarray,
    labels: Sequence[int] = (0, 1),
    seed: int,
) -> pd.DataFrame:
    """A judgment table: each item (the index of ``truth``) judged by that many distinct
    annotators drawn uniformly from ``crowd``.

    ``judgments_per_item`` is one count for all items or one per item (a re-queued item gets
    more). Returns the columns item, annotator, label and seconds, grouped by item.
    """
    rng = np.random.default_rng(seed)
    n_items, n_annotators = len(truth), len(crowd)
    counts = np.broadcast_to(np.asarray(judgments_per_item, dtype=np.int64), (n_items,))
    if np.ndim(judgments_per_item) and len(judgments_per_item) != n_items:
        raise ValueError(
            JUDGMENT_COUNTS_SHAPE.format(counts=len(judgments_per_item), items=n_items)
        )
    most = int(counts.max()) if n_items else 0
    if most > n_annotators:
        raise ValueError(TOO_MANY_JUDGMENTS.format(wanted=most, annotators=n_annotators))
    label_values = np.unique(np.asarray(labels, dtype=np.int64))
    truth_values = truth.to_numpy()
    unknown = ~np.isin(truth_values, label_values)
    if unknown.any():
        raise ValueError(
            UNKNOWN_TRUE_LABEL.format(label=truth_values[unknown].tolist()[0], labels=list(labels))
        )
    true_codes = np.searchsorted(label_values, truth_values)

    chosen = _distinct_annotators(rng=rng, items=n_items, per_item=most, annotators=n_annotators)
    keep = np.arange(most)[None, :] < counts[:, None]
    item_position = np.nonzero(keep)[0]
    annotator = chosen[keep]
    true_code = true_codes[item_position]

    kind = np.array([member.kind for member in crowd], dtype=object)[annotator]
    accuracy = np.array([member.accuracy for member in crowd])[annotator]
    constant_code = np.array(
        [
            np.searchsorted(label_values, member.constant_label)
            if member.constant_label is not None
            else 0
            for member in crowd
        ]
    )[annotator]
    median_seconds = np.array([member.median_seconds for member in crowd])[annotator]

    n_labels = len(label_values)
    correct = rng.random(len(annotator)) < accuracy
    # A wrong answer is a uniformly chosen other label: shift the truth by 1 … K−1.
    wrong = (true_code + rng.integers(1, max(n_labels, 2), len(annotator))) % n_labels
    answer = np.where(correct, true_code, wrong)
    answer = np.where(
        kind == AnnotatorKind.RANDOM_SPAMMER, rng.integers(0, n_labels, len(answer)), answer
    )
    answer = np.where(kind == AnnotatorKind.CONSTANT_SPAMMER, constant_code, answer)
    seconds = median_seconds * np.exp(rng.normal(0.0, _SECONDS_SPREAD, len(answer)))

    ids = np.array([member.annotator for member in crowd])
    return pd.DataFrame(
        {
            ITEM: truth.index.to_numpy()[item_position],
            ANNOTATOR: ids[annotator],
            LABEL: label_values[answer],
            SECONDS: seconds,
        }
    )


@dataclass(frozen=True)
class LabelScore:
    """Accuracy of aggregated labels on the ``items`` items that have both a label and a truth."""

    accuracy: float
    items: int


def score_labels(
    *, predicted: pd.Series | Mapping[Hashable, int], truth: pd.Series | Mapping[Hashable, int]
) -> LabelScore:
    """Share of items whose aggregated label equals the true one (``nan`` when none overlap)."""
    predicted, truth = pd.Series(predicted), pd.Series(truth)
    common = predicted.index.intersection(truth.index)
    if len(common) == 0:
        return LabelScore(accuracy=np.nan, items=0)
    hits = predicted.loc[common].to_numpy() == truth.loc[common].to_numpy()
    return LabelScore(accuracy=float(hits.mean()), items=len(common))


def _distinct_annotators(
    *, rng: np.random.Generator, items: int, per_item: int, annotators: int
) -> np.ndarray:
    """``per_item`` distinct annotator positions for every item, each subset uniform.

    Column by column, redraw the entries that repeat an earlier column of their row; with
    far fewer judgments per item than annotators almost nothing is redrawn.
    """
    chosen = np.empty((items, per_item), dtype=np.int64)
    for column in range(per_item):
        draw = rng.integers(0, annotators, items)
        while True:
            clash = (chosen[:, :column] == draw[:, None]).any(axis=1)
            if not clash.any():
                break
            draw[clash] = rng.integers(0, annotators, int(clash.sum()))
        chosen[:, column] = draw
    return chosen
