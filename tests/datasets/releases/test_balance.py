"""Balance: per-row weights for the training split, deterministic, described for the datasheet."""

from __future__ import annotations

import pytest

from datasets.releases.balance import (
    ERROR_TARGET_RATIO,
    ERROR_UNKNOWN_METHOD,
    BalanceTally,
    LabelCounts,
    apply_balance,
    count_labels,
    plan_balance,
)


def make_rows(
    *, positives: int, negatives: int, split: str = "train", start: int = 0
) -> list[dict]:
    rows = [{"pair_id": start + i, "label": 1, "split": split} for i in range(positives)]
    rows += [
        {"pair_id": start + positives + i, "label": 0, "split": split} for i in range(negatives)
    ]
    return rows


def release_rows() -> list[dict]:
    return [
        *make_rows(positives=2_000, negatives=8_000),
        *make_rows(positives=300, negatives=900, split="val", start=100_000),
        *make_rows(positives=500, negatives=2_500, split="test", start=200_000),
    ]


def weights(rows, plan, tally=None) -> dict[int, float]:
    return {
        row["pair_id"]: row["weight"] for row in apply_balance(rows=rows, plan=plan, tally=tally)
    }


def test_count_labels_per_split():
    counts = count_labels(rows=release_rows())
    assert counts == {
        "train": LabelCounts(positives=2_000, negatives=8_000),
        "val": LabelCounts(positives=300, negatives=900),
        "test": LabelCounts(positives=500, negatives=2_500),
    }
    assert counts["train"].ratio == 4.0


def test_undersampling_keeps_about_the_target_and_leaves_held_out_splits_alone():
    rows = release_rows()
    plan = plan_balance(
        train=LabelCounts(positives=2_000, negatives=8_000),
        target_ratio=1.0,
        method="undersample",
        seed=7,
    )
    assert plan.applied and plan.reduced_label == 0 and plan.keep_fraction == 0.25
    tally = BalanceTally()
    result = weights(rows, plan, tally)
    train_negatives = [
        result[r["pair_id"]] for r in rows if r["split"] == "train" and r["label"] == 0
    ]
    assert set(train_negatives) == {0.0, 1.0}
    kept = sum(train_negatives)
    # binomial(8000, 0.25): mean 2000, standard deviation about 39
    assert abs(kept - 2_000) < 160
    assert all(
        result[r["pair_id"]] == 1.0 for r in rows if r["split"] != "train" or r["label"] == 1
    )

    summary = tally.summary(plan=plan)
    assert summary.kept == LabelCounts(positives=2_000, negatives=int(kept))
    assert summary.natural["val"] == LabelCounts(positives=300, negatives=900)
    assert summary.natural["test"] == LabelCounts(positives=500, negatives=2_500)
    text = summary.describe()
    assert "Negatives were under-sampled" in text
    assert f"{int(kept):,} of 8,000 kept" in text
    assert "seed 7" in text
    assert "val: 300 positives, 900 negatives (3.000 negatives per positive)" in text
    assert "test: 500 positives, 2,500 negatives (5.000 negatives per positive)" in text


def test_undersampling_is_deterministic_and_stable_as_the_fraction_grows():
    rows = make_rows(positives=1_000, negatives=5_000)
    counts = LabelCounts(positives=1_000, negatives=5_000)
    plan = plan_balance(train=counts, target_ratio=2.0, method="undersample", seed=3)
    first = weights([dict(r) for r in rows], plan)
    assert first == weights([dict(r) for r in rows], plan)
    other_seed = plan_balance(train=counts, target_ratio=2.0, method="undersample", seed=4)
    assert first != weights([dict(r) for r in rows], other_seed)
    # A later release with a looser target keeps every pair kept before.
    looser = plan_balance(train=counts, target_ratio=3.0, method="undersample", seed=3)
    later = weights([dict(r) for r in rows], looser)
    assert {p for p, w in first.items() if w} <= {p for p, w in later.items() if w}


def test_undersampling_positives_when_negatives_are_scarce():
    plan = plan_balance(
        train=LabelCounts(positives=4_000, negatives=1_000),
        target_ratio=1.0,
        method="undersample",
        seed=1,
    )
    assert plan.reduced_label == 1 and plan.keep_fraction == 0.25


def test_oversampling_weights_the_minority_label():
    rows = release_rows()
    plan = plan_balance(
        train=LabelCounts(positives=2_000, negatives=8_000),
        target_ratio=1.0,
        method="oversample",
        seed=0,
    )
    assert (plan.boosted_label, plan.boost) == (1, 4.0)
    tally = BalanceTally()
    result = weights(rows, plan, tally)
    for row in rows:
        boosted = row["split"] == "train" and row["label"] == 1
        assert result[row["pair_id"]] == (4.0 if boosted else 1.0)
    summary = tally.summary(plan=plan)
    assert summary.weighted_ratio == 1.0
    assert "each has weight 4" in summary.describe()

    scarce = plan_balance(
        train=LabelCounts(positives=3_000, negatives=1_000),
        target_ratio=2.0,
        method="oversample",
        seed=0,
    )
    assert (scarce.boosted_label, scarce.boost) == (0, 6.0)


@pytest.mark.parametrize(
    ("counts", "target", "method", "note"),
    [
        (
            LabelCounts(positives=10, negatives=40),
            None,
            "undersample",
            "the project sets no balancing",
        ),
        (LabelCounts(positives=10, negatives=40), 1.0, "none", "the project sets no balancing"),
        (LabelCounts(positives=0, negatives=40), 1.0, "oversample", "lacks positives or negatives"),
        (
            LabelCounts(positives=10, negatives=10),
            1.0,
            "oversample",
            "already has the target ratio",
        ),
    ],
)
def test_plans_that_do_nothing_say_why(counts, target, method, note):
    plan = plan_balance(train=counts, target_ratio=target, method=method, seed=0)
    assert not plan.applied
    assert note in plan.note
    rows = make_rows(positives=counts.positives, negatives=counts.negatives)
    tally = BalanceTally()
    assert set(weights(rows, plan, tally).values()) <= {1.0}
    assert "No balancing was applied" in tally.summary(plan=plan).describe()


def test_bad_parameters_are_rejected():
    counts = LabelCounts(positives=1, negatives=1)
    with pytest.raises(ValueError) as excinfo:
        plan_balance(train=counts, target_ratio=1.0, method="smote", seed=0)
    assert str(excinfo.value) == ERROR_UNKNOWN_METHOD.format(method="smote")
    with pytest.raises(ValueError) as excinfo:
        plan_balance(train=counts, target_ratio=0.0, method="oversample", seed=0)
    assert str(excinfo.value) == ERROR_TARGET_RATIO
