"""Per-annotator quality: the figures in the manager's annotator table, and automatic flags.

Input is the judgment table of :mod:`annotate.agreement.aggregation` (``item``, ``annotator``,
``label``; unsure answers and suspended annotators already dropped by the caller) with an
optional ``seconds`` column, the time the annotator spent on the item. Figures that cannot
be computed for an annotator (no gold items answered, no timings) are ``nan``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotate.agreement.aggregation import (
    ANNOTATOR,
    DawidSkeneResult,
    Judgments,
    encode_judgments,
    judgments_frame,
)

SECONDS = "seconds"

FLAG_LOW_GOLD_ACCURACY = "low_gold_accuracy"
FLAG_TOO_FAST = "too_fast"
FLAG_SINGLE_ANSWER = "single_answer"

LOW_GOLD_ACCURACY_REASON = (
    "Gold accuracy {accuracy:.0%} on {items} gold items is below {threshold:.0%}."
)
TOO_FAST_REASON = (
    "Median {seconds:.1f} s per item is below the plausible minimum of {threshold:.1f} s."
)
SINGLE_ANSWER_REASON = "Answered {label} on {share:.0%} of {items} items (limit {threshold:.0%})."

INVALID_MIN_OTHERS = "The consensus of others needs at least 1 other judgment, got {count}."


def annotator_stats(
    *,
    judgments: Judgments,
    gold: Mapping[Hashable, int] | pd.Series | None = None,
    min_other_judgments: int = 2,
    dawid_skene: DawidSkeneResult | None = None,
) -> pd.DataFrame:
    """One row per annotator (index ``annotator``) with the columns:

    - ``items_done``: judgments given;
    - ``gold_items``, ``gold_correct``, ``gold_accuracy``: answers on items in ``gold`` (item →
      known label) and the share that matches;
    - ``consensus_items``, ``consensus_agreement``: judgments on items where the *other*
      annotators (at least ``min_other_judgments`` of them) have a unique majority label, and
      the share that agrees with it; the annotator's own vote never counts towards the
      consensus it is compared with (leave-one-out majority);
    - ``median_seconds``: median of the ``seconds`` column, ``nan`` without it;
    - ``answers_<label>`` for every label: the answer distribution as counts;
    - ``top_answer``, ``top_answer_share``: the most frequent answer and its share;
    - ``ds_accuracy`` when a Dawid–Skene result is given: the estimated probability of a
      correct answer, Σ_t prior(t) · confusion[t, t] (its full confusion matrix is in the
      result).
    """
    if min_other_judgments < 1:
        raise ValueError(INVALID_MIN_OTHERS.format(count=min_other_judgments))
    frame = judgments_frame(judgments=judgments)
    encoded = encode_judgments(judgments=frame)
    n_annotators, n_labels = len(encoded.annotators), len(encoded.labels)
    annotator, label = encoded.annotator, encoded.label

    def per_annotator(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(annotator, weights=weights, minlength=n_annotators)

    items_done = per_annotator().astype(np.int64)

    gold_label = np.full(len(encoded.items), np.nan)
    if gold is not None:
        gold_series = pd.Series(gold).dropna()
        positions = encoded.items.get_indexer(gold_series.index)
        judged = positions >= 0
        gold_label[positions[judged]] = gold_series.to_numpy(dtype=float)[judged]
    known = gold_label[encoded.item]
    on_gold = ~np.isnan(known)
    correct = on_gold & (encoded.labels.to_numpy()[label] == known)
    gold_items = per_annotator(on_gold.astype(float)).astype(np.int64)
    gold_correct = per_annotator(correct.astype(float)).astype(np.int64)

    # Leave-one-out majority: the item's label counts minus this judgment's own vote.
    others = encoded.item_label_counts()[encoded.item]
    others[np.arange(len(label)), label] -= 1
    best = others.argmax(axis=1) if n_labels else np.zeros(0, dtype=np.intp)
    best_count = others[np.arange(len(best)), best]
    unique_best = (others == best_count[:, None]).sum(axis=1) == 1
    has_consensus = (others.sum(axis=1) >= min_other_judgments) & unique_best
    agrees = has_consensus & (best == label)
    consensus_items = per_annotator(has_consensus.astype(float)).astype(np.int64)
    consensus_agreed = per_annotator(agrees.astype(float))

    if SECONDS in frame.columns:
        median_seconds = (
            pd.Series(frame[SECONDS].to_numpy(dtype=float))
            .groupby(annotator)
            .median()
            .reindex(np.arange(n_annotators))
            .to_numpy()
        )
    else:
        median_seconds = np.full(n_annotators, np.nan)

    answers = np.bincount(annotator * n_labels + label, minlength=n_annotators * n_labels).reshape(
        n_annotators, n_labels
    )
    top = answers.argmax(axis=1) if n_labels else np.zeros(0, dtype=np.intp)

    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {
            "items_done": items_done,
            "gold_items": gold_items,
            "gold_correct": gold_correct,
            "gold_accuracy": gold_correct / gold_items,
            "consensus_items": consensus_items,
            "consensus_agreement": consensus_agreed / consensus_items,
            "median_seconds": median_seconds,
            **{f"answers_{value}": answers[:, code] for code, value in enumerate(encoded.labels)},
            "top_answer": encoded.labels.to_numpy()[top],
            "top_answer_share": answers[np.arange(n_annotators), top] / items_done,
        }
    if dawid_skene is not None:
        diagonal = np.diagonal(dawid_skene.confusion, axis1=1, axis2=2)
        estimated = pd.Series(
            diagonal @ dawid_skene.priors.to_numpy(), index=dawid_skene.annotators
        )
        columns["ds_accuracy"] = estimated.reindex(encoded.annotators).to_numpy()
    return pd.DataFrame(columns, index=encoded.annotators.rename(ANNOTATOR))


@dataclass(frozen=True)
class AnnotatorFlag:
    """Why an annotator needs a manager's look: ``code`` is one of the ``FLAG_*`` constants."""

    code: str
    reason: str


def annotator_flags(
    *,
    stats: pd.DataFrame,
    min_gold_accuracy: float = 0.7,
    min_gold_items: int = 10,
    min_median_seconds: float = 1.0,
    max_answer_share: float = 0.95,
    min_items: int = 20,
) -> dict[Hashable, list[AnnotatorFlag]]:
    """Flags for the annotators in ``stats`` (from :func:`annotator_stats`) that need review.

    - low gold accuracy: below ``min_gold_accuracy`` on at least ``min_gold_items`` gold items;
    - implausibly fast: median seconds per item below ``min_median_seconds``;
    - one answer for everything: the top answer's share above ``max_answer_share``.

    The last two need at least ``min_items`` judgments, so a new annotator's first few
    answers do not flag them. Annotators without flags are absent from the result.
    """
    flags: dict[Hashable, list[AnnotatorFlag]] = {}
    # itertuples keeps each column's type (iterrows would turn an int label into a float).
    for row in stats.itertuples():
        found = []
        if row.gold_items >= min_gold_items and row.gold_accuracy < min_gold_accuracy:
            found.append(
                AnnotatorFlag(
                    code=FLAG_LOW_GOLD_ACCURACY,
                    reason=LOW_GOLD_ACCURACY_REASON.format(
                        accuracy=row.gold_accuracy,
                        items=int(row.gold_items),
                        threshold=min_gold_accuracy,
                    ),
                )
            )
        experienced = row.items_done >= min_items
        # nan (no timings) compares False and raises no flag.
        if experienced and row.median_seconds < min_median_seconds:
            found.append(
                AnnotatorFlag(
                    code=FLAG_TOO_FAST,
                    reason=TOO_FAST_REASON.format(
                        seconds=row.median_seconds, threshold=min_median_seconds
                    ),
                )
            )
        if experienced and row.top_answer_share > max_answer_share:
            found.append(
                AnnotatorFlag(
                    code=FLAG_SINGLE_ANSWER,
                    reason=SINGLE_ANSWER_REASON.format(
                        label=row.top_answer,
                        share=row.top_answer_share,
                        items=int(row.items_done),
                        threshold=max_answer_share,
                    ),
                )
            )
        if found:
            flags[row.Index] = found
    return flags
