"""Caption normalisation and exact / near-duplicate flags within one image."""

import pytest

from datasets.curation.caption_dedup import (
    CAPTION_SIMILARITY_DEFAULT,
    DUPLICATE_EXACT,
    DUPLICATE_NEAR,
    CaptionDuplicate,
    caption_duplicates,
    caption_key,
    caption_shingles,
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


# --- captions in every script --------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("一只狗在草地上跑。", "一只狗在草地上跑"),  # full-width punctuation
        ("ＡＢＣ犬が走る", "abc犬が走る"),  # full-width Latin
        ("سگ‌ها در ساحل", "سگها در ساحل"),  # with and without the Persian non-joiner
        ("Ein Mädchen im Straßencafé", "ein mädchen im strassencafé"),
        ("❤️ two dogs", "❤ two dogs"),  # emoji presentation selector
    ],
)
def test_keys_are_equal_across_spellings_of_one_caption(a, b):
    assert caption_key(text=a) == caption_key(text=b)


def test_emoji_only_captions_are_not_all_the_same_caption():
    assert caption_key(text="🐶🐶") != caption_key(text="🐱🐱")
    assert caption_duplicates(captions=[(1, "🐶🐶"), (2, "🐱🐱")]) == ()


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        # Real Flickr8K-CN pairs: the same sentence with a word added or dropped.
        ("在攀岩的男人。", "攀岩的男人。"),
        ("叼着树叶的狗。", "叼着树叶的狗狗。"),
        ("两只狗在海滩上玩红色的球", "两只狗在海滩上玩红色的球。"),
        ("浜辺で遊ぶ二匹の犬と赤いボール", "浜辺で遊ぶ二匹の犬と赤いボールだ"),
        ("สุนัขสองตัวเล่นลูกบอลสีแดงบนชายหาด", "สุนัขสองตัวเล่นลูกบอลสีแดงบนชายหาดกัน"),
        ("क्या यह एक कुत्ता है जो दौड़ रहा है", "यह एक कुत्ता है जो दौड़ रहा है"),
        (
            "두 마리의 개가 해변에서 빨간 공을 가지고 놀고 있다",
            "두 마리의 개가 해변에서 빨간 공을 놀고 있다",
        ),
        (
            "Zwei Hunde spielen am Strand mit einem roten Ball",
            "Zwei Hunde spielen am Strand mit dem roten Ball",
        ),
    ],
)
def test_near_duplicates_are_found_in_every_script(earlier, later):
    (flag,) = caption_duplicates(captions=[(1, earlier), (2, later)])

    assert (flag.caption_id, flag.duplicate_of) == (2, 1)
    assert flag.similarity >= CAPTION_SIMILARITY_DEFAULT


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # Real Flickr8K-CN captions of one image: different descriptions, many shared characters.
        ("一个男孩蹲在球网前面。", "男孩手拿冰球杆蹲在地上。"),
        ("一个小男孩在球网旁等待。", "拿着高尔夫杆的小孩儿在守门。"),
        ("浜辺で遊ぶ二匹の犬と赤いボール", "砂浜を走る二匹の犬"),
        ("สุนัขสองตัวเล่นลูกบอลสีแดงบนชายหาด", "สุนัขวิ่งบนชายหาด"),
    ],
)
def test_different_descriptions_are_not_near_duplicates_in_any_script(a, b):
    assert caption_similarity(a=a, b=b) < CAPTION_SIMILARITY_DEFAULT
    assert caption_duplicates(captions=[(1, a), (2, b)]) == ()


def test_unspaced_scripts_compare_character_bigrams():
    assert caption_shingles(text="两只狗。一个球") == frozenset({"两只", "只狗", "一个", "个球"})
    assert caption_shingles(text="狗") == frozenset({"狗"})
    assert caption_shingles(text="Tシャツ") == frozenset({"t", "シャ", "ャツ"})
