"""Inter-annotator agreement over plain judgment tables.

Input is the judgment table of :mod:`annotate.agreement.aggregation` (columns ``item``, ``annotator``,
``label``; unsure answers and suspended annotators already dropped by the caller). Every
statistic is computed from per-item label counts or per-pair contingency tables built with
``np.bincount``, never from a dense items × annotators matrix, so a million judgments by
hundreds of annotators take well under a second.

A statistic that is undefined for the data (no item with two judgments, a single label used
by everyone) is ``nan``; ``pandas.DataFrame.to_json`` and the JSON helpers turn it into null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotate.agreement.aggregation import EncodedJudgments, Judgments, encode_judgments

FLEISS_UNEQUAL_RATINGS = (
    "Fleiss' kappa needs the same number of ratings for every item, but items have between "
    "{fewest} and {most}; pass ratings_per_item to use the first n ratings of each item."
)
FLEISS_TOO_FEW_RATINGS = "Fleiss' kappa needs at least 2 ratings per item, got {ratings}."
INVALID_CONFIDENCE = "The confidence level must lie strictly between 0 and 1, got {confidence}."
INVALID_RESAMPLES = "The number of bootstrap resamples must be at least 1, got {resamples}."

# Largest resamples × count patterns array the bootstrap draws at once (8 bytes a cell).
_BOOTSTRAP_CELLS = 4_000_000


def krippendorff_alpha(*, judgments: Judgments | EncodedJudgments) -> float:
    """Krippendorff's α for nominal data, with missing judgments allowed.

    Items judged once carry no pairable value and drop out, as in Krippendorff's
    definition. ``nan`` when fewer than two pairable values or a single label remain.
    """
    contributions = _coincidence_contributions(_pairable_counts(judgments))
    return _alpha_from_coincidences(contributions.sum(axis=0))


@dataclass(frozen=True)
class AlphaInterval:
    """Krippendorff's α with a percentile bootstrap confidence interval."""

    alpha: float
    low: float
    high: float
    confidence: float
    resamples: int


def krippendorff_alpha_interval(
    *,
    judgments: Judgments | EncodedJudgments,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AlphaInterval:
    """Krippendorff's α and a percentile bootstrap interval from resampling items.

    Each resample draws the pairable items (those with at least two judgments) with
    replacement, keeping each item's judgments together, and recomputes α; the interval is
    the central ``confidence`` share of those values. The same ``seed`` gives the same interval.
    """
    if resamples < 1:
        raise ValueError(INVALID_RESAMPLES.format(resamples=resamples))
    if not 0 < confidence < 1:
        raise ValueError(INVALID_CONFIDENCE.format(confidence=confidence))
    counts = _pairable_counts(judgments)
    n_items = len(counts)
    if n_items == 0:
        return AlphaInterval(
            alpha=np.nan, low=np.nan, high=np.nan, confidence=confidence, resamples=resamples
        )
    # Items with the same label counts add the same coincidences, so a resample is fully
    # described by how many items of each count pattern it draws: a multinomial over the
    # patterns, with the same distribution as drawing items but a few numbers per resample
    # instead of one per item.
    patterns, frequency = np.unique(counts, axis=0, return_counts=True)
    contributions = _coincidence_contributions(patterns)
    alpha = _alpha_from_coincidences(np.tensordot(frequency, contributions, axes=1))

    rng = np.random.default_rng(seed)
    flat = contributions.reshape(len(patterns), -1)
    alphas = np.empty(resamples)
    # Batches bound the draws array (resamples × patterns) when nearly every item is unique.
    batch = max(1, _BOOTSTRAP_CELLS // len(patterns))
    for start in range(0, resamples, batch):
        size = min(batch, resamples - start)
        draws = rng.multinomial(n_items, frequency / n_items, size=size)
        coincidences = (draws @ flat).reshape(size, *contributions.shape[1:])
        alphas[start : start + size] = _alpha_from_coincidences(coincidences)
    tail = (1 - confidence) / 2
    if np.isnan(alphas).all():
        low = high = np.nan
    else:
        low, high = np.nanquantile(alphas, [tail, 1 - tail])
    return AlphaInterval(
        alpha=alpha,
        low=float(low),
        high=float(high),
        confidence=confidence,
        resamples=resamples,
    )


@dataclass(frozen=True)
class FleissKappa:
    """Fleiss' κ over ``items`` items rated ``ratings_per_item`` times each."""

    kappa: float
    items: int
    ratings_per_item: int


def fleiss_kappa(
    *, judgments: Judgments | EncodedJudgments, ratings_per_item: int | None = None
) -> FleissKappa:
    """Fleiss' κ, which is defined only when every item has the same number of ratings.

    With ``ratings_per_item`` None every item must have the same count (else ``ValueError``).
    With ``ratings_per_item=n``, each item with at least n judgments contributes its first n
    in the order given (pass judgments sorted by submission time: the first n are the
    design's redundancy, while later ones were requested because the item was disputed, and
    keeping only items with exactly n would drop the hard ones); items with fewer are left
    out. ``kappa`` is ``nan`` when no item qualifies or everyone used one label.
    """
    if ratings_per_item is not None and ratings_per_item < 2:
        raise ValueError(FLEISS_TOO_FEW_RATINGS.format(ratings=ratings_per_item))
    encoded = encode_judgments(judgments=judgments)
    n_labels = len(encoded.labels)
    if ratings_per_item is None:
        per_item = np.bincount(encoded.item, minlength=len(encoded.items))
        if len(per_item) and per_item.min() != per_item.max():
            raise ValueError(
                FLEISS_UNEQUAL_RATINGS.format(fewest=per_item.min(), most=per_item.max())
            )
        ratings = int(per_item[0]) if len(per_item) else 0
        # Items judged once each have no agreement to measure.
        counts = encoded.item_label_counts() if ratings >= 2 else np.empty((0, n_labels))
    else:
        ratings = ratings_per_item
        order = np.argsort(encoded.item, kind="stable")
        item = encoded.item[order]
        keep = _rank_within_item(item) < ratings
        counts = np.bincount(
            item[keep] * n_labels + encoded.label[order][keep],
            minlength=len(encoded.items) * n_labels,
        ).reshape(len(encoded.items), n_labels)
        counts = counts[counts.sum(axis=1) == ratings]
    if len(counts) == 0:
        return FleissKappa(kappa=np.nan, items=0, ratings_per_item=ratings)

    # Fleiss (1971), as statsmodels.stats.inter_rater.fleiss_kappa(method="fleiss").
    counts = counts.astype(float)
    label_shares = counts.sum(axis=0) / counts.sum()
    item_agreement = ((counts**2).sum(axis=1) - ratings) / (ratings * (ratings - 1))
    observed = item_agreement.mean()
    expected = float(np.sum(label_shares**2))
    kappa = (observed - expected) / (1 - expected) if expected < 1 else np.nan
    return FleissKappa(kappa=float(kappa), items=len(counts), ratings_per_item=ratings)


def percent_agreement(*, judgments: Judgments | EncodedJudgments) -> float:
    """Share of agreeing judgment pairs within an item, averaged over items (0 to 1).

    For an item with m judgments of which n_k chose label k this is
    Σ n_k (n_k − 1) / (m (m − 1)); items with a single judgment are left out. With the same
    number of judgments on every item it equals Fleiss' observed agreement P̄.
    """
    counts = _pairable_counts(judgments).astype(float)
    if len(counts) == 0:
        return np.nan
    totals = counts.sum(axis=1)
    agreeing = (counts * (counts - 1)).sum(axis=1) / (totals * (totals - 1))
    return float(agreeing.mean())


@dataclass(frozen=True)
class CohenKappaMatrix:
    """Pairwise Cohen's κ among annotators, as symmetric annotator × annotator frames.

    ``kappa`` is ``nan`` on the diagonal and for pairs sharing fewer than the minimum number
    of items; ``shared_items`` counts the items both judged (the diagonal: items done).
    Only annotators with at least one qualifying partner appear.
    """

    kappa: pd.DataFrame
    shared_items: pd.DataFrame


def cohen_kappa_matrix(
    *, judgments: Judgments | EncodedJudgments, min_shared_items: int = 20
) -> CohenKappaMatrix:
    """Cohen's κ for every pair of annotators who judged at least ``min_shared_items`` items.

    Each pair's κ comes from their answers on the items both judged, exactly as
    ``sklearn.metrics.cohen_kappa_score`` on those two answer lists; ``nan`` when both gave
    one and the same label throughout.
    """
    encoded = encode_judgments(judgments=judgments)
    n_annotators, n_labels = len(encoded.annotators), len(encoded.labels)
    first, second, first_label, second_label = _judgment_pairs(
        item=encoded.item, annotator=encoded.annotator, label=encoded.label
    )
    pair_key = first.astype(np.int64) * n_annotators + second
    pairs, pair_code = np.unique(pair_key, return_inverse=True)
    tables = np.bincount(
        (pair_code * n_labels + first_label) * n_labels + second_label,
        minlength=len(pairs) * n_labels * n_labels,
    ).reshape(len(pairs), n_labels, n_labels)
    shared = tables.sum(axis=(1, 2))

    enough = shared >= min_shared_items
    pairs, tables, shared = pairs[enough], tables[enough].astype(float), shared[enough]
    observed = np.trace(tables, axis1=1, axis2=2) / shared
    expected = np.einsum("pk,pk->p", tables.sum(axis=2), tables.sum(axis=1)) / shared**2
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)

    first, second = np.divmod(pairs, n_annotators)
    members = np.union1d(first, second)
    position = np.full(n_annotators, -1)
    position[members] = np.arange(len(members))
    kappa_matrix = np.full((len(members), len(members)), np.nan)
    shared_matrix = np.zeros((len(members), len(members)), dtype=np.int64)
    for rows, columns in ((position[first], position[second]), (position[second], position[first])):
        kappa_matrix[rows, columns] = kappa
        shared_matrix[rows, columns] = shared
    items_done = np.bincount(encoded.annotator, minlength=n_annotators)
    shared_matrix[np.arange(len(members)), np.arange(len(members))] = items_done[members]

    names = encoded.annotators[members]
    return CohenKappaMatrix(
        kappa=pd.DataFrame(kappa_matrix, index=names, columns=names),
        shared_items=pd.DataFrame(shared_matrix, index=names, columns=names),
    )


@dataclass(frozen=True)
class AgreementSummary:
    """The project-level figures the dashboard shows, computed together."""

    judgments: int
    items: int
    annotators: int
    alpha: AlphaInterval
    fleiss: FleissKappa
    percent_agreement: float


def agreement_summary(
    *,
    judgments: Judgments | EncodedJudgments,
    ratings_per_item: int,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AgreementSummary:
    """Krippendorff's α with its interval, Fleiss' κ over the first ``ratings_per_item``
    judgments of each item (the project's target redundancy) and percent agreement."""
    # Encoded once; every statistic accepts the encoded form as well.
    encoded = encode_judgments(judgments=judgments)
    return AgreementSummary(
        judgments=encoded.n_judgments,
        items=len(encoded.items),
        annotators=len(encoded.annotators),
        alpha=krippendorff_alpha_interval(
            judgments=encoded, resamples=resamples, confidence=confidence, seed=seed
        ),
        fleiss=fleiss_kappa(judgments=encoded, ratings_per_item=ratings_per_item),
        percent_agreement=percent_agreement(judgments=encoded),
    )


def _pairable_counts(judgments: Judgments | EncodedJudgments) -> np.ndarray:
    """Label counts (items × labels) of the items with at least two judgments."""
    counts = encode_judgments(judgments=judgments).item_label_counts()
    return counts[counts.sum(axis=1) >= 2]


def _coincidence_contributions(counts: np.ndarray) -> np.ndarray:
    """Each pairable item's share of the coincidence matrix, shape (items, labels, labels).

    An item with m values of which n_c are c adds (n_c n_k − [c = k] n_c) / (m − 1) to cell
    (c, k): every ordered pair of its values, weighted so the item adds m values in total.
    """
    counts = counts.astype(float)
    scale = 1.0 / (counts.sum(axis=1) - 1)
    contributions = np.einsum("ic,ik->ick", counts, counts)
    n_labels = counts.shape[1]
    contributions[:, np.arange(n_labels), np.arange(n_labels)] -= counts
    return contributions * scale[:, None, None]


def _alpha_from_coincidences(coincidences: np.ndarray) -> float | np.ndarray:
    """α from one coincidence matrix, or from a stack of them; nan where undefined."""
    # Nominal metric: α = 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k.
    label_totals = coincidences.sum(axis=-1)
    n = label_totals.sum(axis=-1)
    expected = n**2 - np.sum(label_totals**2, axis=-1)
    observed = n - np.trace(coincidences, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where((n >= 2) & (expected > 0), 1 - (n - 1) * observed / expected, np.nan)
    return float(alpha) if alpha.ndim == 0 else alpha


def _rank_within_item(sorted_item: np.ndarray) -> np.ndarray:
    """Position of each judgment within its item, for judgments sorted by item."""
    positions = np.arange(len(sorted_item))
    starts = np.r_[0, np.flatnonzero(sorted_item[1:] != sorted_item[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(sorted_item)])
    return positions - np.repeat(starts, sizes)


def _judgment_pairs(
    *, item: np.ndarray, annotator: np.ndarray, label: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair of judgments on the same item, lower annotator code first.

    Work is proportional to the number of pairs: after sorting by item, the judgment at
    offset d pairs with the one d places later while both lie in the same item, and only
    judgments with more than d successors in their item take part in round d.
    """
    order = np.argsort(item, kind="stable")
    item, annotator, label = item[order], annotator[order], label[order]
    rank = _rank_within_item(item)
    sizes = np.bincount(item, minlength=int(item.max()) + 1 if len(item) else 0)
    successors = sizes[item] - rank - 1

    firsts, seconds, first_labels, second_labels = [], [], [], []
    candidates = np.arange(len(item))
    offset = 1
    while True:
        candidates = candidates[successors[candidates] >= offset]
        if len(candidates) == 0:
            break
        partners = candidates + offset
        swap = annotator[candidates] > annotator[partners]
        left = np.where(swap, partners, candidates)
        right = np.where(swap, candidates, partners)
        firsts.append(annotator[left])
        seconds.append(annotator[right])
        first_labels.append(label[left])
        second_labels.append(label[right])
        offset += 1
    if not firsts:
        empty = np.array([], dtype=np.intp)
        return empty, empty, empty, empty
    return (
        np.concatenate(firsts),
        np.concatenate(seconds),
        np.concatenate(first_labels),
        np.concatenate(second_labels),
    )
