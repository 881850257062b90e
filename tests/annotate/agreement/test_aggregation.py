import numpy as np
import pandas as pd
import pytest

from annotate.agreement.aggregation import (
    AGREED,
    DISPUTED,
    DUPLICATE_JUDGMENTS,
    INVALID_TARGET,
    INVALID_THRESHOLD,
    MISSING_COLUMNS,
    MISSING_VALUES,
    NON_INTEGER_LABELS,
    PENDING,
    UNKNOWN_ENGINE,
    Judgment,
    dawid_skene,
    encode_judgments,
    item_status,
    majority_vote,
)


def frame(rows):
    return pd.DataFrame(rows, columns=["item", "annotator", "label"])


def noisy_crowd(*, seed, items=300, annotators=12, labels=2, missing=0.6):
    """Annotators of varied accuracy over random truth, each item judged by a random subset."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, labels, items)
    accuracy = rng.uniform(0.35, 0.95, annotators)
    item, annotator = np.nonzero(rng.random((items, annotators)) >= missing)
    correct = rng.random(len(item)) < accuracy[annotator]
    wrong = (truth[item] + rng.integers(1, labels, len(item))) % labels
    label = np.where(correct, truth[item], wrong)
    # String ids and a shuffled row order: nothing may depend on either.
    judgments = frame(
        {"item": [f"pair-{i}" for i in item], "annotator": annotator + 100, "label": label}
    )
    return judgments.sample(frac=1.0, random_state=seed).reset_index(drop=True), truth


def test_majority_vote_by_hand():
    judgments = frame(
        [
            ("a", "ann", 1),
            ("a", "bob", 1),
            ("a", "cat", 0),
            ("b", "ann", 0),
            ("b", "bob", 0),
            ("b", "cat", 0),
            ("c", "ann", 1),
            ("d", "ann", 1),
            ("d", "bob", 0),
        ]
    )
    result = majority_vote(judgments=judgments, target_judgments=2, agreement_threshold=0.75)

    assert list(result.index) == ["a", "b", "c", "d"]
    assert result.loc["a"].to_dict() == {
        "label": 1,
        "confidence": pytest.approx(2 / 3),
        "judgments": 3,
        "status": DISPUTED,
    }
    assert result.loc["b"].to_dict() == {
        "label": 0,
        "confidence": 1.0,
        "judgments": 3,
        "status": AGREED,
    }
    assert result.loc["c", "status"] == PENDING
    # A tie goes to the smallest label and is never agreed.
    assert result.loc["d", "label"] == 0
    assert result.loc["d", "confidence"] == 0.5
    assert result.loc["d", "status"] == DISPUTED


def test_records_and_frames_give_the_same_result():
    records = [Judgment("x", 1, 1), Judgment("x", 2, 0), Judgment("y", 1, 1)]
    from_records = majority_vote(judgments=records, target_judgments=1, agreement_threshold=0.6)
    from_frame = majority_vote(
        judgments=frame(records), target_judgments=1, agreement_threshold=0.6
    )
    pd.testing.assert_frame_equal(from_records, from_frame)


def test_item_status_boundaries():
    status = item_status(
        judgments=np.array([2, 3, 3, 5]),
        confidence=np.array([1.0, 0.8, 0.79, 0.5]),
        target_judgments=3,
        agreement_threshold=0.8,
    )
    assert list(status) == [PENDING, AGREED, DISPUTED, DISPUTED]


@pytest.mark.parametrize("threshold", [0.5, 0.3, 1.01])
def test_threshold_must_rule_out_ties(threshold):
    with pytest.raises(ValueError) as error:
        majority_vote(
            judgments=frame([("a", 1, 1)]), target_judgments=1, agreement_threshold=threshold
        )
    assert str(error.value) == INVALID_THRESHOLD.format(threshold=threshold)


def test_invalid_inputs_are_rejected_with_clear_messages():
    with pytest.raises(ValueError) as error:
        dawid_skene(judgments=frame([("a", 1, 1)]), target_judgments=0, agreement_threshold=0.9)
    assert str(error.value) == INVALID_TARGET.format(target=0)

    with pytest.raises(ValueError) as error:
        encode_judgments(judgments=frame([("a", 1, 1), ("a", 1, 0), ("b", 2, 1)]))
    assert str(error.value) == DUPLICATE_JUDGMENTS.format(count=1)

    with pytest.raises(ValueError) as error:
        encode_judgments(judgments=pd.DataFrame({"item": [1], "label": [1]}))
    assert str(error.value) == MISSING_COLUMNS.format(missing="annotator")

    unsure_left_in = frame([("a", 1, 1), ("a", 2, None)])
    with pytest.raises(ValueError) as error:
        encode_judgments(judgments=unsure_left_in)
    assert str(error.value) == MISSING_VALUES.format(count=1)

    with pytest.raises(ValueError) as error:
        majority_vote(
            judgments=frame([("a", 1, 1)]),
            target_judgments=1,
            agreement_threshold=0.9,
            engine="torch",
        )
    assert str(error.value) == UNKNOWN_ENGINE.format(engine="torch")


def test_dawid_skene_learns_to_ignore_a_constant_spammer():
    # Two reliable annotators agree on every item; a third always answers 1. Majority vote
    # follows the spammer whenever the two split; Dawid–Skene sees that "1" from the spammer
    # says nothing and that the reliable two are right.
    rows = []
    for item in range(40):
        truth = item % 2
        rows += [(item, "good-1", truth), (item, "good-2", truth), (item, "spam", 1)]
    result = dawid_skene(judgments=frame(rows), target_judgments=3, agreement_threshold=0.9)

    assert result.converged
    assert (result.items["label"].to_numpy() == np.arange(40) % 2).all()
    assert (result.items["status"] == AGREED).all()
    spam = result.confusion_matrix("spam")
    assert spam.loc[0, 1] == pytest.approx(1.0)
    assert spam.loc[1, 1] == pytest.approx(1.0)
    assert spam.loc[0, 0] == 0.0
    good = result.confusion_matrix("good-1")
    assert np.diag(good.to_numpy()) == pytest.approx([1.0, 1.0])
    assert result.priors.to_numpy() == pytest.approx([0.5, 0.5])
    np.testing.assert_allclose(result.confusion.sum(axis=2), 1.0)


def test_gold_pins_the_posterior():
    judgments = frame([("a", 1, 0), ("a", 2, 0), ("b", 1, 1), ("b", 2, 0)])
    result = dawid_skene(
        judgments=judgments, target_judgments=2, agreement_threshold=0.9, gold={"a": 1, "z": 0}
    )
    assert result.posteriors.loc["a"].to_list() == [0.0, 1.0]
    assert result.items.loc["a", "label"] == 1
    assert "z" not in result.items.index


@pytest.mark.parametrize(
    ("seed", "labels", "with_gold"), [(0, 2, False), (1, 2, True), (2, 3, False), (5, 3, True)]
)
def test_numpy_dawid_skene_equals_crowdkit(seed, labels, with_gold):
    judgments, truth = noisy_crowd(seed=seed, labels=labels)
    gold = {f"pair-{i}": int(truth[i]) for i in range(0, len(truth), 9)} if with_gold else None
    arguments = {
        "judgments": judgments,
        "target_judgments": 3,
        "agreement_threshold": 0.8,
        "gold": gold,
    }

    ours = dawid_skene(**arguments)
    reference = dawid_skene(**arguments, engine="crowdkit")

    assert ours.iterations == reference.iterations
    assert ours.converged and reference.converged
    # crowd-kit clips posteriors at 1e-10 without renormalising.
    np.testing.assert_allclose(ours.posteriors, reference.posteriors, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.confusion, reference.confusion, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.priors, reference.priors, rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(ours.items, reference.items, check_exact=False, atol=1e-9)


def test_numpy_majority_vote_equals_crowdkit():
    judgments, _ = noisy_crowd(seed=7, labels=3)
    ours = majority_vote(judgments=judgments, target_judgments=3, agreement_threshold=0.6)
    reference = majority_vote(
        judgments=judgments, target_judgments=3, agreement_threshold=0.6, engine="crowdkit"
    )

    np.testing.assert_allclose(ours["confidence"], reference["confidence"], rtol=0, atol=1e-12)
    assert (ours["judgments"] == reference["judgments"]).all()
    assert (ours["status"] == reference["status"]).all()
    # The engines break ties differently (see majority_vote); everywhere else they agree.
    counts = judgments.groupby(["item", "label"]).size().unstack(fill_value=0)
    untied = (counts.eq(counts.max(axis=1), axis=0).sum(axis=1) == 1).reindex(ours.index)
    assert untied.sum() > 200
    assert (ours["label"][untied] == reference["label"][untied]).all()


def test_labels_must_be_integers_but_may_arrive_as_floats():
    as_floats = frame([("a", 1, 1.0), ("a", 2, 0.0)])
    result = majority_vote(judgments=as_floats, target_judgments=1, agreement_threshold=0.9)
    assert result.loc["a", "label"] == 0
    assert isinstance(result.loc["a", "label"], np.integer)

    with pytest.raises(ValueError) as error:
        encode_judgments(judgments=frame([("a", 1, 0.5)]))
    assert str(error.value) == NON_INTEGER_LABELS


@pytest.mark.parametrize("engine", ["numpy", "crowdkit"])
def test_no_judgments_yet(engine):
    empty = frame([]).astype(int)
    votes = majority_vote(
        judgments=empty, target_judgments=3, agreement_threshold=0.8, engine=engine
    )
    model = dawid_skene(judgments=empty, target_judgments=3, agreement_threshold=0.8, engine=engine)
    assert list(votes.columns) == ["label", "confidence", "judgments", "status"]
    assert votes.empty and model.items.empty
    assert model.confusion.shape == (0, 0, 0)
