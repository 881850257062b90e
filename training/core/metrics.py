"""Evaluation metrics as pure numpy functions; every rate is a fraction in [0, 1].

Ties in scores are broken against the model: a positive tied with a negative ranks below it, so a
model that scores everything the same gets the worst ranks, not the best.
"""

from __future__ import annotations

import numpy as np

RECALL_KS = (1, 5, 10)


def _as_arrays(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError("scores and labels must have the same length")
    return scores, labels


def classification_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and the confusion counts when ``score >= threshold``
    predicts a match. Precision/recall/F1 of an empty denominator are 0."""
    scores, labels = _as_arrays(scores, labels)
    predicted = scores >= threshold
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    tn = int(np.sum(~predicted & ~labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(scores) if len(scores) else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising F1 on (validation) pairs.

    Candidates are the distinct scores (predict a match at ``score >= candidate``); the one chosen
    is moved half-way down to the next lower distinct score, so that unseen pairs scoring just under
    the last accepted validation score are still accepted. Ties go to the higher threshold.
    """
    scores, labels = _as_arrays(scores, labels)
    if not len(scores):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    tp = np.cumsum(sorted_labels)
    fp = np.cumsum(~sorted_labels)
    # Only the last index of each run of equal scores is a real cut.
    last = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    tp, fp, cut_scores = tp[last], fp[last], sorted_scores[last]
    n_pos = labels.sum()
    f1 = np.where(tp > 0, 2 * tp / (tp + fp + n_pos), 0.0)
    best = int(np.argmax(f1))
    if best + 1 < len(cut_scores):
        return float((cut_scores[best] + cut_scores[best + 1]) / 2)
    return float(cut_scores[best])


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of the ranking of labelled pairs: the mean, over positives, of the
    precision at the rank of each positive (ties ranked pessimistically). 0 without positives."""
    scores, labels = _as_arrays(scores, labels)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return 0.0
    order = np.lexsort((labels, -scores))  # score descending, negatives first on ties
    hits = labels[order]
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, n_pos + 1) / ranks))


def retrieval_ranks(similarity: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query (row): the 1-based rank of its best-ranked positive and its average precision.

    ``similarity`` and ``positives`` are [queries, gallery]; a query may have several positives.
    Queries without any positive are dropped.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    keep = positives.any(axis=1)
    similarity, positives = similarity[keep], positives[keep]
    if not len(similarity):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    order = np.lexsort((positives, -similarity), axis=1)
    hits = np.take_along_axis(positives, order, axis=1)
    first_rank = hits.argmax(axis=1) + 1
    cum_hits = np.cumsum(hits, axis=1)
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at_hits = np.where(hits, cum_hits / ranks, 0.0)
    ap = precision_at_hits.sum(axis=1) / hits.sum(axis=1)
    return first_rank, ap


def summarise_ranks(
    first_rank: np.ndarray, ap: np.ndarray, ks: tuple[int, ...] = RECALL_KS
) -> dict[str, float]:
    """R@K (fraction of queries with a positive in the top K), median and mean rank, mAP."""
    if not len(first_rank):
        return {**{f"r{k}": 0.0 for k in ks}, "median_rank": 0.0, "mean_rank": 0.0, "map": 0.0}
    out = {f"r{k}": float(np.mean(first_rank <= k)) for k in ks}
    out["median_rank"] = float(np.median(first_rank))
    out["mean_rank"] = float(np.mean(first_rank))
    out["map"] = float(np.mean(ap))
    return out


def retrieval_metrics(
    similarity: np.ndarray, positives: np.ndarray, ks: tuple[int, ...] = RECALL_KS
) -> dict[str, float]:
    """Recall@K, median rank, mean rank and mAP of ranking each row's gallery (the columns)."""
    return summarise_ranks(*retrieval_ranks(similarity, positives), ks=ks)


def rsum(metrics: dict[str, float], ks: tuple[int, ...] = RECALL_KS) -> float:
    """Sum of R@K over both directions (``i2t_r1`` … ``t2i_r10``): the model-selection score."""
    return float(sum(metrics[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks))
