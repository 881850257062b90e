import pytest

from datasets.ingest.captions import CAPTION_EMPTY, CaptionError, clean_caption, normalize_caption


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  A dog\truns\n\non grass ", "A dog runs on grass"),
        ("Cafe\u0301 tables", "Café tables"),  # decomposed accent composed (NFC)
        ("zero\u200bwidth\u200d joiner\ufeff", "zerowidth joiner"),
        ("bell\x07 and null\x00 chars", "bell and null chars"),
        ("right\u202eto-left override", "rightto-left override"),
        ("<b>kept as text</b>", "<b>kept as text</b>"),
    ],
)
def test_normalize_caption(raw, expected):
    assert normalize_caption(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\u200b\u200b", "\n\t"])
def test_empty_captions_are_rejected(raw):
    with pytest.raises(CaptionError, match=CAPTION_EMPTY):
        clean_caption(raw, max_chars=100)


def test_overlong_captions_are_rejected_after_normalising():
    assert clean_caption("a" + " " * 50 + "b", max_chars=3) == "a b"
    with pytest.raises(CaptionError, match="longer than 10 characters"):
        clean_caption("x" * 11, max_chars=10)
