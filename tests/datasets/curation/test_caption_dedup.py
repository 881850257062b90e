"""Caption normalisation and exact / near-duplicate flags within one image."""

import pytest

from datasets.curation.caption_dedup import (
    CAPTION_SIMILARITY_DEFAULT,
    DUPLICATE_EXACT,
    DUPLICATE_NEAR,
    CaptionDuplicate,
    caption_duplicates,
    caption_key,
    caption_similarity,
    caption_words,
)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("  A Dog   runs\ton the BEACH. ", "a dog runs on the beach"),
        ("A dog's toy!", "a dogs toy"),
        ("black-and-white dog", "black and white dog"),
        ("Ｆｕｌｌｗｉｄｔｈ ＤＯＧ", "fullwidth dog"),
        ("Straße", "strasse"),
        ("...", ""),
    ],
)
def test_caption_key_folds_case_whitespace_and_punctuation(text, key):
    assert caption_key(text=text) == key


def test_words_and_similarity_use_the_normalised_key():
    assert caption_words(text="Two dogs, playing.") == ("two", "dogs", "playing")
    assert caption_similarity(a="Two dogs play.", b="two DOGS play") == 1.0
    assert caption_similarity(a="two dogs play", b="two cats play") == pytest.approx(2 / 4)


def test_exact_duplicate_points_at_the_earliest_caption():
    captions = [(7, "A dog runs on the beach."), (3, "a dog runs on the beach"), (9, "A cat.")]

    assert caption_duplicates(captions=captions) == (
        CaptionDuplicate(caption_id=7, duplicate_of=3, kind=DUPLICATE_EXACT, similarity=1.0),
    )


def test_near_duplicate_above_the_threshold_is_flagged():
    captions = [
        (1, "Two dogs play in the snow."),
        (2, "Two dogs play in the snow together."),
        (3, "A brown dog chases a black dog through deep snow."),
    ]

    (flag,) = caption_duplicates(captions=captions)

    assert (flag.caption_id, flag.duplicate_of, flag.kind) == (2, 1, DUPLICATE_NEAR)
    assert flag.similarity == pytest.approx(6 / 7)
    assert flag.similarity >= CAPTION_SIMILARITY_DEFAULT


def test_different_descriptions_of_one_scene_are_not_flagged():
    captions = [
        (1, "A dog runs through the grass."),
        (2, "A dog running through the grass."),
        (3, "A brown dog is running outside."),
    ]

    assert caption_duplicates(captions=captions) == ()


def test_threshold_is_a_parameter():
    captions = [(1, "a dog runs through the grass"), (2, "a dog running through the grass")]

    (flag,) = caption_duplicates(captions=captions, threshold=0.7)

    assert flag.caption_id == 2


def test_a_chain_does_not_flag_a_caption_unlike_every_kept_one():
    captions = [
        (1, "a b c d e f g h i j"),
        (2, "a b c d e f g h i j k l"),  # 10/12 with 1: flagged
        (3, "c d e f g h i j k l m n"),  # 8/14 with 1: kept, although 10/14 with 2
    ]

    assert [f.caption_id for f in caption_duplicates(captions=captions, threshold=0.8)] == [2]
