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


# --- captions in every script --------------------------------------------------------------

ZWNJ, ZWJ = "\u200c", "\u200d"
ENGLAND = "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"


@pytest.mark.parametrize(
    "kept",
    [
        f"می{ZWNJ}خواهم",  # Persian: "I want", one word written with a non-joiner
        f"سگ{ZWNJ}ها در ساحل بازی می{ZWNJ}کنند",
        f"क्{ZWJ}ष",  # Devanagari half form requested with a joiner
        f"അവന്{ZWJ} ഓടി",  # Malayalam chillu written with a joiner, at the end of a word
        f"👨{ZWJ}👩{ZWJ}👧 on the beach",  # family: one emoji ZWJ sequence
        f"👩🏽{ZWJ}💻 at a desk",  # skin tone modifier, then ZWJ
        f"🏳️{ZWJ}🌈 flag",  # variation selector, then ZWJ
        f"{ENGLAND} flag",  # an emoji tag sequence
        "🇩🇪 Zwei Hunde spielen am Strand",  # regional indicators
        "كَلْبَانِ يَلْعَبَانِ عَلَى الشَّاطِئِ",  # Arabic with tashkeel
        "שְׁנֵי כְּלָבִים מְשַׂחֲקִים בַּחוֹף",  # Hebrew with points
        "两只狗在海滩上玩红色的球",
        "浜辺で遊ぶ二匹の犬と赤いボール",
        "สุนัขสองตัวเล่นลูกบอลสีแดงบนชายหาด",
        "क्या यह एक कुत्ता है जो दौड़ रहा है",
        "두 마리의 개가 해변에서 놀고 있다",
    ],
)
def test_orthographic_joiners_emoji_sequences_and_marks_are_kept(kept):
    assert normalize_caption(kept) == kept


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Joiners that join nothing: at the ends, beside spaces, doubled.
        (f"{ZWNJ}می{ZWNJ} {ZWNJ}خواهم{ZWNJ}", "می خواهم"),
        (f"می{ZWNJ}{ZWNJ}خواهم", f"می{ZWNJ}خواهم"),
        (f"dog{ZWJ} {ZWJ}🐶", "dog 🐶"),
        # Bidi embeddings, overrides, isolates and marks: invisible, and they reorder text.
        ("abc\u202eevil\u202c \u2066iso\u2069 \u200fRLM\u200e \u061cALM", "abcevil iso RLM ALM"),
        ("\u202bשלום\u202c world", "שלום world"),
        # Tag characters outside an emoji tag sequence, or one left open.
        ("dog\U000e0067\U000e007f", "dog"),
        ("🏴\U000e0067\U000e0062 flag", "🏴 flag"),
        # Zero width space, word joiner, byte order mark, soft hyphen.
        ("zwei\u200bHunde\u2060 am\ufeff Strand\u00ad", "zweiHunde am Strand"),
        # Decomposed Hangul and accents are composed.
        ("\u1100\u1161\u11a8 Cafe\u0301", "각 Café"),
    ],
)
def test_invisible_controls_are_removed(raw, expected):
    assert normalize_caption(raw) == expected


def test_removing_a_control_does_not_leave_a_mark_uncomposed():
    # e + (an override) + combining acute: once the override goes, NFC composes them.
    assert normalize_caption("Cafe\u202e\u0301") == "Café"
