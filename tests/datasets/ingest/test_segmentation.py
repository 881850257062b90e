"""Words, characters and lengths of captions in every script (UAX #29 by uniseg)."""

import pytest

from datasets.ingest.captions import normalize_caption
from datasets.ingest.segmentation import (
    UNIT_CHARACTERS,
    UNIT_WORDS,
    CaptionLength,
    caption_length,
    graphemes,
    is_letter,
    tokens,
)
from tests.multilingual import CAPTIONS, TOO_SHORT


@pytest.mark.parametrize("sample", CAPTIONS + TOO_SHORT, ids=lambda s: f"{s.language}:{s.text}")
def test_caption_length_in_every_script(sample):
    length = caption_length(normalize_caption(sample.text))

    assert (length.words, length.characters, length.chars_per_word) == (
        sample.words,
        sample.characters,
        sample.chars_per_word,
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("can't stop", ["can't", "stop"]),  # UAX #29 keeps apostrophes inside words
        ("3.14 e-mail", ["3.14", "e", "mail"]),
        ("क्या यह", ["क्या", "यह"]),  # marks stay inside their word
        ("سگ‌ها در", ["سگ‌ها", "در"]),  # so does a Persian non-joiner
        ("두 마리의 개가", ["두", "마리의", "개가"]),
        ("Tシャツを着た", ["T", "シ", "ャ", "ツ", "を", "着", "た"]),
        ("🐶 dog 🏖️!", ["dog"]),  # emoji and punctuation are not words
    ],
)
def test_tokens_are_uax29_words_with_unspaced_scripts_as_characters(text, words):
    assert [t.text for t in tokens(text)] == words


def test_unspaced_runs_are_numbered_so_bigrams_never_cross_a_break():
    found = tokens("两只狗, 一个球")

    assert [t.run for t in found] == [1, 1, 1, 2, 2, 2]


def test_graphemes_are_what_a_reader_sees_as_one_character():
    assert graphemes("👨‍👩‍👧🇩🇪é") == ["👨‍👩‍👧", "🇩🇪", "é"]
    assert len(graphemes("สุนัข")) == 3


@pytest.mark.parametrize(
    ("grapheme", "letter"),
    [("क्", True), ("\u064e", True), ("שְׁ", True), ("a", True), ("7", False), ("🐶", False)],
)
def test_combining_marks_count_as_letters(grapheme, letter):
    assert is_letter(grapheme) is letter


def test_length_rules_convert_words_to_characters_exactly():
    chinese = CaptionLength(words=0, characters=3, chars_per_word=1)
    japanese = CaptionLength(words=0, characters=7, chars_per_word=2)  # 3.5 words
    mixed = CaptionLength(words=3, characters=1, chars_per_word=2)  # 3.5 words, in words

    assert chinese.unit == UNIT_CHARACTERS and not chinese.below(3) and chinese.below(4)
    assert japanese.below(4) and not japanese.below(3) and japanese.limit(4) == 8
    assert (japanese.shown(), japanese.limit(3)) == (7, 6)
    assert mixed.unit == UNIT_WORDS and mixed.below(4) and not mixed.below(3)
    assert (mixed.shown(rounding="down"), mixed.shown(rounding="up")) == (3, 4)
    assert mixed.above(3) and not mixed.above(4)
