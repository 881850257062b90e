from collections import Counter

import numpy as np
import pandas as pd
import pytest

from annotate.agreement.aggregation import dawid_skene, majority_vote
from annotate.simulation.crowd import (
    INVALID_FRACTIONS,
    TOO_MANY_JUDGMENTS,
    UNKNOWN_TRUE_LABEL,
    AnnotatorKind,
    CrowdSpec,
    LabelScore,
    score_labels,
    simulate_annotators,
    simulate_answer,
    simulate_judgments,
    simulate_truth,
)


def test_crowd_has_the_requested_kinds():
    crowd = simulate_annotators(spec=CrowdSpec(annotators=20, spammer_fraction=0.3), seed=0)
    kinds = Counter(member.kind for member in crowd)
    assert kinds == {
        AnnotatorKind.CONSTANT_SPAMMER: 3,
        AnnotatorKind.RANDOM_SPAMMER: 3,
        AnnotatorKind.SLOPPY: 2,
        AnnotatorKind.GOOD: 12,
    }
    assert [member.annotator for member in crowd] == list(range(20))
    for member in crowd:
        assert (member.constant_label is not None) == (
            member.kind is AnnotatorKind.CONSTANT_SPAMMER
        )

    with pytest.raises(ValueError) as error:
        simulate_annotators(
            spec=CrowdSpec(annotators=5, spammer_fraction=0.7, sloppy_fraction=0.5), seed=0
        )
    assert str(error.value) == INVALID_FRACTIONS.format(spammers=0.7, sloppy=0.5)


def test_judgments_follow_the_crowd_and_the_seed():
    crowd = simulate_annotators(spec=CrowdSpec(annotators=10, spammer_fraction=0.4), seed=1)
    truth = simulate_truth(items=3000, seed=1)
    counts = np.where(np.arange(3000) % 3 == 0, 4, 3)
    judgments = simulate_judgments(truth=truth, crowd=crowd, judgments_per_item=counts, seed=1)

    pd.testing.assert_frame_equal(
        judgments,
        simulate_judgments(truth=truth, crowd=crowd, judgments_per_item=counts, seed=1),
    )
    assert len(judgments) == counts.sum()
    assert (judgments.groupby("item").size().to_numpy() == counts).all()
    assert not judgments.duplicated(["item", "annotator"]).any()

    truth_of = truth.loc[judgments["item"]].to_numpy()
    for member in crowd:
        mine = judgments["annotator"] == member.annotator
        answers = judgments.loc[mine, "label"].to_numpy()
        accuracy = (answers == truth_of[mine.to_numpy()]).mean()
        if member.kind is AnnotatorKind.CONSTANT_SPAMMER:
            assert (answers == member.constant_label).all()
        elif member.kind is AnnotatorKind.RANDOM_SPAMMER:
            assert accuracy == pytest.approx(0.5, abs=0.05)
        else:
            assert accuracy == pytest.approx(member.accuracy, abs=0.05)
        seconds = judgments.loc[mine, "seconds"].median()
        assert seconds == pytest.approx(member.median_seconds, rel=0.15)


def test_judgment_requests_beyond_the_crowd_are_rejected():
    crowd = simulate_annotators(spec=CrowdSpec(annotators=3), seed=0)
    with pytest.raises(ValueError) as error:
        simulate_judgments(
            truth=simulate_truth(items=5, seed=0), crowd=crowd, judgments_per_item=4, seed=0
        )
    assert str(error.value) == TOO_MANY_JUDGMENTS.format(wanted=4, annotators=3)

    with pytest.raises(ValueError) as error:
        simulate_judgments(truth=pd.Series([0, 2]), crowd=crowd, judgments_per_item=1, seed=0)
    assert str(error.value) == UNKNOWN_TRUE_LABEL.format(label=2, labels=[0, 1])


def test_single_answers_follow_the_annotator_kind():
    crowd = simulate_annotators(
        spec=CrowdSpec(annotators=40, spammer_fraction=0.5, sloppy_fraction=0.0), seed=2
    )
    rng = np.random.default_rng(2)
    for member in crowd:
        answers = [
            simulate_answer(annotator=member, true_label=1, labels=(0, 1), rng=rng)
            for _ in range(200)
        ]
        labels = np.array([label for label, _ in answers])
        assert all(seconds > 0 for _, seconds in answers)
        if member.kind is AnnotatorKind.CONSTANT_SPAMMER:
            assert (labels == member.constant_label).all()
        elif member.kind is AnnotatorKind.GOOD:
            assert labels.mean() == pytest.approx(member.accuracy, abs=0.08)


def test_score_labels():
    score = score_labels(
        predicted=pd.Series({"a": 1, "b": 0, "c": 1}), truth={"a": 1, "b": 1, "d": 0}
    )
    assert score == LabelScore(accuracy=0.5, items=2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dawid_skene_beats_majority_vote_with_thirty_percent_spammers(seed):
    # 20 annotators: 3 constant spammers, 3 random spammers, 2 sloppy, 12 good; every item
    # judged by 5 of them, so about 1.5 of an item's 5 answers carry no information.
    crowd = simulate_annotators(spec=CrowdSpec(annotators=20, spammer_fraction=0.3), seed=seed)
    truth = simulate_truth(items=2000, seed=seed)
    judgments = simulate_judgments(truth=truth, crowd=crowd, judgments_per_item=5, seed=seed)

    by_vote = majority_vote(judgments=judgments, target_judgments=5, agreement_threshold=0.8)
    by_model = dawid_skene(judgments=judgments, target_judgments=5, agreement_threshold=0.9)
    vote = score_labels(predicted=by_vote["label"], truth=truth)
    model = score_labels(predicted=by_model.items["label"], truth=truth)

    assert vote.items == model.items == 2000
    assert model.accuracy >= 0.97
    assert model.accuracy > vote.accuracy
