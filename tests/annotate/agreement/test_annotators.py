import math

import pandas as pd
import pytest

from annotate.agreement.aggregation import dawid_skene
from annotate.agreement.annotators import (
    FLAG_LOW_GOLD_ACCURACY,
    FLAG_SINGLE_ANSWER,
    FLAG_TOO_FAST,
    INVALID_MIN_OTHERS,
    LOW_GOLD_ACCURACY_REASON,
    SINGLE_ANSWER_REASON,
    TOO_FAST_REASON,
    AnnotatorFlag,
    annotator_flags,
    annotator_stats,
)
from annotate.simulation.crowd import (
    AnnotatorKind,
    CrowdSpec,
    simulate_annotators,
    simulate_judgments,
    simulate_truth,
)


def frame(rows):
    return pd.DataFrame(rows, columns=["item", "annotator", "label", "seconds"])


def test_stats_by_hand():
    judgments = frame(
        [
            # Item a: ann, bob and cat say 1, dan says 0.
            ("a", "ann", 1, 4.0),
            ("a", "bob", 1, 6.0),
            ("a", "cat", 1, 5.0),
            ("a", "dan", 0, 1.0),
            # Item b: ann and bob say 1, cat says 0. For ann the others (bob 1, cat 0) tie, so
            # she has no consensus to agree with here, although her own vote would break it.
            ("b", "ann", 1, 2.0),
            ("b", "bob", 1, 8.0),
            ("b", "cat", 0, 3.0),
            # Item g is gold with answer 0.
            ("g", "ann", 0, 9.0),
            ("g", "dan", 1, 1.0),
        ]
    )
    stats = annotator_stats(judgments=judgments, gold={"g": 0, "unjudged": 1})

    ann = stats.loc["ann"]
    assert ann["items_done"] == 3
    assert (ann["gold_items"], ann["gold_correct"], ann["gold_accuracy"]) == (1, 1, 1.0)
    # a: others bob 1, cat 1, dan 0 → 1, agrees. b: tie → no consensus. g: one other → none.
    assert (ann["consensus_items"], ann["consensus_agreement"]) == (1, 1.0)
    assert ann["median_seconds"] == 4.0
    assert (ann["answers_0"], ann["answers_1"]) == (1, 2)
    assert ann["top_answer"] == 1
    assert ann["top_answer_share"] == pytest.approx(2 / 3)

    dan = stats.loc["dan"]
    assert (dan["gold_items"], dan["gold_accuracy"]) == (1, 0.0)
    assert (dan["consensus_items"], dan["consensus_agreement"]) == (1, 0.0)

    cat = stats.loc["cat"]
    assert math.isnan(cat["gold_accuracy"])
    # a: others 1, 1, 0 → 1, agrees; b: others 1, 1 → 1, disagrees.
    assert (cat["consensus_items"], cat["consensus_agreement"]) == (2, 0.5)

    with_one_other = annotator_stats(judgments=judgments, min_other_judgments=1)
    assert with_one_other.loc["ann", "consensus_items"] == 2  # g now has dan's answer

    with pytest.raises(ValueError) as error:
        annotator_stats(judgments=judgments, min_other_judgments=0)
    assert str(error.value) == INVALID_MIN_OTHERS.format(count=0)


def test_stats_without_timings_and_with_dawid_skene():
    judgments = frame([(i, a, i % 2, 1.0) for i in range(10) for a in ("x", "y", "z")])
    result = dawid_skene(judgments=judgments, target_judgments=3, agreement_threshold=0.9)
    stats = annotator_stats(judgments=judgments.drop(columns="seconds"), dawid_skene=result)
    assert stats["median_seconds"].isna().all()
    assert stats["ds_accuracy"].to_numpy() == pytest.approx([1.0, 1.0, 1.0])


def test_stats_and_flags_with_no_judgments_yet():
    stats = annotator_stats(judgments=frame([]).astype({"label": int}))
    assert stats.empty
    assert "consensus_agreement" in stats.columns
    assert annotator_flags(stats=stats) == {}


def stats_row(**values):
    row = {
        "items_done": 100,
        "gold_items": 20,
        "gold_accuracy": 0.9,
        "median_seconds": 5.0,
        "top_answer": 1,
        "top_answer_share": 0.6,
    }
    return {**row, **values}


def test_flags_with_reasons():
    stats = pd.DataFrame.from_dict(
        {
            "fine": stats_row(),
            "guesser": stats_row(gold_accuracy=0.55),
            "few_gold": stats_row(gold_items=5, gold_accuracy=0.2),
            "rusher": stats_row(median_seconds=0.6),
            "yes_sayer": stats_row(top_answer_share=0.99),
            "newcomer": stats_row(items_done=5, median_seconds=0.2, top_answer_share=1.0),
            "untimed": stats_row(median_seconds=float("nan")),
        },
        orient="index",
    )
    flags = annotator_flags(stats=stats, min_gold_accuracy=0.7, min_median_seconds=1.0)

    assert set(flags) == {"guesser", "rusher", "yes_sayer"}
    assert flags["guesser"] == [
        AnnotatorFlag(
            code=FLAG_LOW_GOLD_ACCURACY,
            reason=LOW_GOLD_ACCURACY_REASON.format(accuracy=0.55, items=20, threshold=0.7),
        )
    ]
    assert flags["rusher"] == [
        AnnotatorFlag(code=FLAG_TOO_FAST, reason=TOO_FAST_REASON.format(seconds=0.6, threshold=1.0))
    ]
    assert flags["yes_sayer"] == [
        AnnotatorFlag(
            code=FLAG_SINGLE_ANSWER,
            reason=SINGLE_ANSWER_REASON.format(label=1, share=0.99, items=100, threshold=0.95),
        )
    ]
    assert flags["guesser"][0].reason == "Gold accuracy 55% on 20 gold items is below 70%."

    stricter = annotator_flags(stats=stats, min_gold_accuracy=0.95, min_gold_items=1)
    assert {flag.code for flag in stricter["fine"]} == {FLAG_LOW_GOLD_ACCURACY}


def test_simulated_spammers_are_flagged_and_good_annotators_are_not():
    crowd = simulate_annotators(
        spec=CrowdSpec(annotators=20, spammer_fraction=0.3, sloppy_fraction=0.0), seed=3
    )
    truth = simulate_truth(items=600, seed=3)
    judgments = simulate_judgments(truth=truth, crowd=crowd, judgments_per_item=5, seed=3)
    gold = truth.iloc[:100]
    stats = annotator_stats(judgments=judgments, gold=gold)
    flags = annotator_flags(stats=stats, min_gold_accuracy=0.75, min_median_seconds=1.5)

    kinds = {member.annotator: member.kind for member in crowd}
    for annotator, kind in kinds.items():
        codes = {flag.code for flag in flags.get(annotator, [])}
        if kind is AnnotatorKind.GOOD:
            assert codes == set()
            assert stats.loc[annotator, "consensus_agreement"] > 0.8
        elif kind is AnnotatorKind.CONSTANT_SPAMMER:
            assert {FLAG_SINGLE_ANSWER, FLAG_TOO_FAST} <= codes
        else:
            assert {FLAG_LOW_GOLD_ACCURACY, FLAG_TOO_FAST} <= codes
