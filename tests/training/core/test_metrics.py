"""Every metric against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.core.metrics import (
    average_precision,
    best_f1_threshold,
    classification_metrics,
    retrieval_metrics,
    retrieval_ranks,
    rsum,
)

# Five labelled pairs, sorted by score for readability.
SCORES = np.array([0.9, 0.8, 0.4, 0.3, 0.1])
LABELS = np.array([1, 0, 1, 0, 0])


def test_classification_metrics_at_a_threshold() -> None:
    # score >= 0.35 predicts [1, 1, 1, 0, 0] against labels [1, 0, 1, 0, 0]:
    # tp 2, fp 1, fn 0, tn 2 -> accuracy 4/5, precision 2/3, recall 1, F1 2*(2/3)/(5/3) = 0.8
    m = classification_metrics(SCORES, LABELS, 0.35)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 0, 2)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)


def test_classification_metrics_with_no_predicted_positive() -> None:
    # Nothing reaches 0.95: tp 0, fp 0 -> precision, recall and F1 are 0 (not NaN); accuracy 3/5.
    m = classification_metrics(SCORES, LABELS, 0.95)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert m["accuracy"] == pytest.approx(0.6)


def test_best_f1_threshold() -> None:
    # Cutting at each score (predict score >= cut), with 2 positives in all:
    #   0.9: tp1 fp0 -> P 1,   R .5 -> F1 .667
    #   0.8: tp1 fp1 -> P .5,  R .5 -> F1 .5
    #   0.4: tp2 fp1 -> P .667, R 1 -> F1 .8   <- best
    #   0.3: tp2 fp2 -> F1 .667;  0.1: tp2 fp3 -> F1 .571
    # The threshold is half-way between 0.4 and the next lower score 0.3: 0.35.
    assert best_f1_threshold(SCORES, LABELS) == pytest.approx(0.35)


def test_best_f1_threshold_treats_tied_scores_as_one_cut() -> None:
    # Scores [0.5, 0.5, 0.2], labels [1, 0, 1]: cutting at 0.5 takes both tied pairs
    # (tp1 fp1: F1 .5); at 0.2 all (tp2 fp1: F1 .8) -> best is the lowest score itself.
    assert best_f1_threshold(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 1])) == pytest.approx(0.2)


def test_average_precision() -> None:
    # Positives at ranks 1 and 3: precision 1/1 and 2/3 -> AP (1 + 0.6667) / 2 = 0.8333
    assert average_precision(SCORES, LABELS) == pytest.approx(5 / 6)


def test_average_precision_breaks_ties_against_the_model() -> None:
    # A positive tied with a negative ranks after it: rank 2 -> AP 1/2.
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)


SIM = np.array(
    [
        [0.9, 0.1, 0.5, 0.3],
        [0.2, 0.8, 0.6, 0.7],
        [0.1, 0.2, 0.3, 0.4],
        [0.5, 0.5, 0.5, 0.5],  # a query without positives: ignored
    ]
)
POS = np.array(
    [
        [1, 0, 0, 0],
        [1, 0, 1, 0],  # two positives
        [0, 1, 0, 0],
        [0, 0, 0, 0],
    ],
    dtype=bool,
)


def test_retrieval_ranks_with_several_positives() -> None:
    # q0 ranks g0 g2 g3 g1: first positive g0 at rank 1; AP = 1
    # q1 ranks g1 g3 g2 g0: positives g2 (rank 3), g0 (rank 4): first 3; AP = (1/3 + 2/4) / 2
    # q2 ranks g3 g2 g1 g0: positive g1 at rank 3; AP = 1/3
    first, ap = retrieval_ranks(SIM, POS)
    assert first.tolist() == [1, 3, 3]
    assert ap == pytest.approx([1.0, (1 / 3 + 1 / 2) / 2, 1 / 3])


def test_retrieval_metrics() -> None:
    # first ranks [1, 3, 3]: R@1 1/3, R@2 1/3, R@3 1; median 3; mean 7/3;
    # mAP = (1 + 0.416667 + 0.333333) / 3 = 0.583333
    m = retrieval_metrics(SIM, POS, ks=(1, 2, 3))
    assert m["r1"] == pytest.approx(1 / 3)
    assert m["r2"] == pytest.approx(1 / 3)
    assert m["r3"] == pytest.approx(1.0)
    assert m["median_rank"] == 3
    assert m["mean_rank"] == pytest.approx(7 / 3)
    assert m["map"] == pytest.approx(0.583333, abs=1e-6)


def test_retrieval_breaks_ties_against_the_model() -> None:
    # A constant scorer must not look perfect: the positive sits after the tied negatives.
    first, _ = retrieval_ranks(np.zeros((1, 3)), np.array([[False, True, False]]))
    assert first.tolist() == [3]


def test_rsum() -> None:
    # 0.1 + 0.2 + 0.3 + 0.4 + 0.5 + 0.6 = 2.1
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    keys = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)]
    assert rsum(dict(zip(keys, values, strict=True))) == pytest.approx(2.1)
