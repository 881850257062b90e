import itertools
import math
import warnings

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from annotate.agreement import coefficients
from annotate.agreement.coefficients import (
    FLEISS_TOO_FEW_RATINGS,
    FLEISS_UNEQUAL_RATINGS,
    INVALID_CONFIDENCE,
    INVALID_RESAMPLES,
    agreement_summary,
    cohen_kappa_matrix,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_interval,
    percent_agreement,
)


def frame(rows):
    return pd.DataFrame(rows, columns=["item", "annotator", "label"])


def reliability_data(*, seed, annotators, items, labels, missing):
    """Random annotators × items answers with nan for missing judgments, as the reference
    packages take them, and the same data as a judgment table."""
    rng = np.random.default_rng(seed)
    # Skewed answers so that agreement is not always near zero.
    truth = rng.integers(0, labels, items)
    data = np.where(rng.random((annotators, items)) < 0.6, truth, rng.integers(0, labels, items))
    data = data.astype(float)
    data[rng.random((annotators, items)) < missing] = np.nan
    annotator, item = np.nonzero(~np.isnan(data))
    judgments = frame({"item": item, "annotator": annotator, "label": data[annotator, item]})
    return data, judgments.astype({"label": int})


def test_alpha_by_hand():
    # o = [[2, 1], [1, 2]] from the three pairable items; n = 6, n_0 = n_1 = 3;
    # α = 1 − (n − 1) · 2 / (2 · 3 · 3) = 4/9. Item "d" has one value and drops out.
    judgments = frame(
        [
            ("a", 1, 0),
            ("a", 2, 0),
            ("b", 1, 0),
            ("b", 2, 1),
            ("c", 1, 1),
            ("c", 2, 1),
            ("d", 1, 1),
        ]
    )
    assert krippendorff_alpha(judgments=judgments) == pytest.approx(4 / 9)


def test_alpha_is_nan_when_undefined():
    one_label = frame([("a", 1, 1), ("a", 2, 1), ("b", 1, 1), ("b", 2, 1)])
    assert math.isnan(krippendorff_alpha(judgments=one_label))
    single_judgments = frame([("a", 1, 1), ("b", 1, 0)])
    assert math.isnan(krippendorff_alpha(judgments=single_judgments))


@pytest.mark.parametrize(
    ("seed", "labels", "missing"), [(0, 2, 0.3), (1, 2, 0.6), (2, 3, 0.5), (3, 4, 0.2)]
)
def test_alpha_equals_krippendorff_package(seed, labels, missing):
    data, judgments = reliability_data(
        seed=seed, annotators=7, items=80, labels=labels, missing=missing
    )
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert krippendorff_alpha(judgments=judgments) == pytest.approx(expected, abs=1e-12)


def test_alpha_interval_matches_resampling_items_with_the_reference():
    data, judgments = reliability_data(seed=4, annotators=6, items=50, labels=3, missing=0.4)
    interval = krippendorff_alpha_interval(judgments=judgments, resamples=4000, seed=11)

    # The slow way: resample the pairable items (columns) and ask the krippendorff package.
    # Both are Monte Carlo estimates of the same percentiles, so they agree up to noise.
    pairable = data[:, (~np.isnan(data)).sum(axis=0) >= 2]
    rng = np.random.default_rng(0)
    alphas = [
        krippendorff.alpha(
            reliability_data=pairable[:, rng.integers(0, pairable.shape[1], pairable.shape[1])],
            level_of_measurement="nominal",
        )
        for _ in range(1500)
    ]
    low, high = np.quantile(alphas, [0.025, 0.975])

    assert interval.alpha == krippendorff_alpha(judgments=judgments)
    assert interval.low == pytest.approx(low, abs=0.03)
    assert interval.high == pytest.approx(high, abs=0.03)
    assert interval.low < interval.alpha < interval.high
    assert (interval.confidence, interval.resamples) == (0.95, 4000)


def test_alpha_interval_is_seeded_and_independent_of_batching(monkeypatch):
    _, judgments = reliability_data(seed=6, annotators=8, items=60, labels=3, missing=0.3)
    interval = krippendorff_alpha_interval(judgments=judgments, resamples=300, seed=3)
    assert interval == krippendorff_alpha_interval(judgments=judgments, resamples=300, seed=3)
    assert interval != krippendorff_alpha_interval(judgments=judgments, resamples=300, seed=4)

    monkeypatch.setattr(coefficients, "_BOOTSTRAP_CELLS", 500)
    assert interval == krippendorff_alpha_interval(judgments=judgments, resamples=300, seed=3)


def test_alpha_interval_without_variation_or_data():
    # Every pairable item has the same label counts: every resample has the same α.
    same = frame([(i, a, int(a == 2)) for i in range(10) for a in (0, 1, 2)])
    interval = krippendorff_alpha_interval(judgments=same, resamples=20)
    assert interval.low == pytest.approx(interval.alpha)
    assert interval.high == pytest.approx(interval.alpha)

    empty = krippendorff_alpha_interval(judgments=frame([("a", 1, 1)]), resamples=20)
    assert math.isnan(empty.alpha) and math.isnan(empty.low) and math.isnan(empty.high)

    with pytest.raises(ValueError) as error:
        krippendorff_alpha_interval(judgments=same, confidence=1.0)
    assert str(error.value) == INVALID_CONFIDENCE.format(confidence=1.0)
    with pytest.raises(ValueError) as error:
        krippendorff_alpha_interval(judgments=same, resamples=0)
    assert str(error.value) == INVALID_RESAMPLES.format(resamples=0)


def test_fleiss_kappa_by_hand():
    # Three items rated twice: agreement 1, 0, 1 → P̄ = 2/3; label shares 1/2 → P_e = 1/2;
    # κ = (2/3 − 1/2) / (1/2) = 1/3.
    judgments = frame(
        [("a", 1, 1), ("a", 2, 1), ("b", 1, 1), ("b", 2, 0), ("c", 1, 0), ("c", 3, 0)]
    )
    result = fleiss_kappa(judgments=judgments)
    assert result.kappa == pytest.approx(1 / 3)
    assert (result.items, result.ratings_per_item) == (3, 2)


@pytest.mark.parametrize(("seed", "labels", "raters"), [(0, 2, 3), (1, 3, 5), (2, 4, 4)])
def test_fleiss_kappa_equals_statsmodels(seed, labels, raters):
    rng = np.random.default_rng(seed)
    answers = np.where(
        rng.random((60, raters)) < 0.5,
        rng.integers(0, labels, (60, 1)),
        rng.integers(0, labels, (60, raters)),
    )
    # Different annotators on every item: Fleiss' κ does not need the same raters.
    annotators = rng.permuted(np.tile(np.arange(10), (60, 1)), axis=1)[:, :raters]
    judgments = frame(
        {
            "item": np.repeat(np.arange(60), raters),
            "annotator": annotators.ravel(),
            "label": answers.ravel(),
        }
    )
    table, _ = aggregate_raters(answers)
    expected = statsmodels_fleiss_kappa(table, method="fleiss")
    assert fleiss_kappa(judgments=judgments).kappa == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_needs_equal_ratings_or_an_explicit_count():
    judgments = frame(
        [
            # Item a: its first two ratings agree; a third, later one disagrees.
            ("a", 1, 1),
            ("a", 2, 1),
            ("a", 3, 0),
            ("b", 1, 0),
            ("b", 3, 0),
            ("c", 2, 1),  # one rating only: left out
        ]
    )
    with pytest.raises(ValueError) as error:
        fleiss_kappa(judgments=judgments)
    assert str(error.value) == FLEISS_UNEQUAL_RATINGS.format(fewest=1, most=3)

    result = fleiss_kappa(judgments=judgments, ratings_per_item=2)
    expected = statsmodels_fleiss_kappa(np.array([[0, 2], [2, 0]]), method="fleiss")
    assert result.kappa == pytest.approx(expected)
    assert result.kappa == 1.0
    assert (result.items, result.ratings_per_item) == (2, 2)

    with pytest.raises(ValueError) as error:
        fleiss_kappa(judgments=judgments, ratings_per_item=1)
    assert str(error.value) == FLEISS_TOO_FEW_RATINGS.format(ratings=1)

    nobody_qualifies = fleiss_kappa(judgments=judgments, ratings_per_item=4)
    assert math.isnan(nobody_qualifies.kappa)
    assert nobody_qualifies.items == 0


def test_percent_agreement_by_hand():
    judgments = frame(
        [
            ("a", 1, 1),
            ("a", 2, 1),
            ("a", 3, 0),  # 1 agreeing pair of 3
            ("b", 1, 0),
            ("b", 2, 0),  # 1 of 1
            ("c", 1, 1),  # one judgment: left out
        ]
    )
    assert percent_agreement(judgments=judgments) == pytest.approx((1 / 3 + 1) / 2)
    assert math.isnan(percent_agreement(judgments=frame([("a", 1, 1)])))


def test_cohen_kappa_matrix_by_hand():
    judgments = frame(
        [
            ("a", "x", 1),
            ("a", "y", 1),
            ("b", "x", 0),
            ("b", "y", 0),
            ("c", "x", 1),
            ("c", "y", 0),
            ("d", "x", 0),
            ("d", "y", 0),
            ("a", "z", 1),  # z shares one item only
        ]
    )
    result = cohen_kappa_matrix(judgments=judgments, min_shared_items=2)

    # p_o = 3/4, p_e = 1/2 · 1/4 + 1/2 · 3/4 = 1/2 → κ = 1/2.
    assert list(result.kappa.index) == ["x", "y"]
    assert result.kappa.loc["x", "y"] == pytest.approx(0.5)
    assert result.kappa.loc["y", "x"] == pytest.approx(0.5)
    assert math.isnan(result.kappa.loc["x", "x"])
    assert result.shared_items.loc["x", "y"] == 4
    assert result.shared_items.loc["x", "x"] == 4


@pytest.mark.parametrize(("seed", "labels"), [(0, 2), (1, 3)])
def test_cohen_kappa_matrix_equals_scikit_learn(seed, labels):
    data, judgments = reliability_data(
        seed=seed, annotators=9, items=70, labels=labels, missing=0.45
    )
    # An annotator who answers 0 throughout, twice: κ with each other is undefined (nan).
    for constant in (9, 10):
        judgments = pd.concat(
            [judgments, frame({"item": range(40), "annotator": constant, "label": 0})]
        )
    data = np.vstack([data, np.full((2, 70), np.nan)])
    data[9:, :40] = 0
    result = cohen_kappa_matrix(judgments=judgments, min_shared_items=20)

    checked = 0
    for first, second in itertools.combinations(range(11), 2):
        shared = ~np.isnan(data[first]) & ~np.isnan(data[second])
        if shared.sum() < 20:
            assert (
                first not in result.kappa.index
                or second not in result.kappa.index
                or math.isnan(result.kappa.loc[first, second])
            )
            continue
        with warnings.catch_warnings():
            # scikit-learn warns about the two constant annotators before returning nan.
            warnings.simplefilter("ignore")
            expected = cohen_kappa_score(data[first, shared], data[second, shared])
        ours = result.kappa.loc[first, second]
        assert ours == pytest.approx(expected, abs=1e-12, nan_ok=True)
        assert result.shared_items.loc[first, second] == shared.sum()
        checked += 1
    assert checked > 20
    assert math.isnan(result.kappa.loc[9, 10])
    assert (result.kappa.fillna(9) == result.kappa.T.fillna(9)).all().all()


def test_agreement_summary_bundles_the_project_figures():
    _, judgments = reliability_data(seed=5, annotators=6, items=40, labels=2, missing=0.3)
    summary = agreement_summary(judgments=judgments, ratings_per_item=3, resamples=50, seed=1)

    assert summary.judgments == len(judgments)
    assert summary.items == judgments["item"].nunique()
    assert summary.annotators == 6
    assert summary.alpha == krippendorff_alpha_interval(judgments=judgments, resamples=50, seed=1)
    assert summary.fleiss == fleiss_kappa(judgments=judgments, ratings_per_item=3)
    assert summary.percent_agreement == percent_agreement(judgments=judgments)


def test_no_judgments_yet():
    empty = frame([]).astype(int)
    assert math.isnan(krippendorff_alpha(judgments=empty))
    assert math.isnan(percent_agreement(judgments=empty))
    assert fleiss_kappa(judgments=empty).items == 0
    assert cohen_kappa_matrix(judgments=empty).kappa.empty
    summary = agreement_summary(judgments=empty, ratings_per_item=3)
    assert (summary.judgments, summary.items, summary.annotators) == (0, 0, 0)
    assert math.isnan(summary.alpha.low)
