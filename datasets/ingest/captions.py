"""Caption text rules shared by every way a caption enters Concord (import, API, annotators)."""

import re
import unicodedata

import regex

CAPTION_EMPTY = "Caption is empty."
CAPTION_TOO_LONG = "Caption is longer than {max_chars} characters."
CAPTION_UNSTORABLE = "Caption contains a NUL character or an unpaired surrogate."

_WHITESPACE = re.compile(r"\s+")
# The raw text is stored too, and PostgreSQL refuses these in any text column.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

ZWNJ = "\u200c"  # zero width non-joiner: Persian می‌خواهم, Indic half forms
ZWJ = "\u200d"  # zero width joiner: Indic conjuncts, emoji sequences (👩‍💻)
# Other format characters that are part of writing, kept like letters: the Mongolian vowel
# separator and the prepended concatenation marks (Arabic number signs and kin), which render.
_ORTHOGRAPHIC_FORMAT = frozenset("\u180e\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u08e2")
_TAG_SPEC = range(0xE0020, 0xE007F)  # tag characters of an emoji tag sequence (🏴 + tags)
_TAG_END = "\U000e007f"
_EMOJI = regex.compile(r"[\p{Extended_Pictographic}\p{Emoji_Modifier}\ufe0f]")


class CaptionError(ValueError):
    """A caption that cannot be stored, with a message fit for the person who wrote it."""


def _joins_letters(before: str, after: str) -> bool:
    # After a virama a joiner chooses the conjunct's form even at the end of a word (the
    # Malayalam chillu അവന്‍); otherwise it must sit inside a word, between letters or marks.
    if before and unicodedata.combining(before) == 9:
        return True
    return (
        bool(before)
        and bool(after)
        and unicodedata.category(before)[0] in "LM"
        and unicodedata.category(after)[0] in "LM"
    )


def _joins_emoji(before: str, after: str) -> bool:
    return bool(before) and bool(after) and bool(_EMOJI.match(before)) and bool(_EMOJI.match(after))


def _tag_sequence_end(text: str, start: int) -> int:
    """End of a well-formed emoji tag sequence's tags starting at ``start`` (tag specs, then
    the cancel tag), or ``start`` when there is none."""
    end = start
    while end < len(text) and ord(text[end]) in _TAG_SPEC:
        end += 1
    if end > start and end < len(text) and text[end] == _TAG_END:
        return end + 1
    return start


def normalize_caption(raw: str) -> str:
    """The stored, comparable form of a caption.

    NFC so that composed and decomposed accents compare equal; control characters dropped
    (line breaks and tabs become spaces); invisible format characters dropped — bidi controls
    and overrides (LRM, RLM, ALM, LRE…PDF, LRI…PDI), zero width space, word joiner, byte order
    mark, soft hyphen — except where they are part of how the text is written: a zero width
    non-joiner or joiner between letters or marks (Persian می‌خواهم, Indic conjuncts), a zero
    width joiner between emoji (👩🏽‍💻), the tag characters of an emoji tag sequence (the flag of
    England) and the few format characters that render (Arabic number signs). Runs of
    whitespace collapse to one space and the ends are trimmed. Case and punctuation are kept:
    they carry meaning for captions ("A dog" vs "a dog." differ only for dedup, which has its
    own, coarser key).
    """
    text = unicodedata.normalize("NFC", raw)
    kept: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        category = unicodedata.category(char)
        if category == "Cc":
            kept.append(" " if char.isspace() else "")
        elif char in (ZWNJ, ZWJ):
            before = kept[-1][-1:] if kept else ""
            after = text[index + 1 : index + 2]
            if _joins_letters(before, after) or (char == ZWJ and _joins_emoji(before, after)):
                kept.append(char)
        elif ord(char) in _TAG_SPEC or char == _TAG_END:
            before = kept[-1][-1:] if kept else ""
            end = _tag_sequence_end(text, index) if _EMOJI.match(before or " ") else index
            if end > index:
                kept.append(text[index:end])
                index = end
                continue
        elif category == "Cf" and char not in _ORTHOGRAPHIC_FORMAT:
            pass
        else:
            kept.append(char)
        index += 1
    collapsed = _WHITESPACE.sub(" ", "".join(kept)).strip()
    # Dropping a format character can bring a base and a combining mark together.
    return unicodedata.normalize("NFC", collapsed)


def clean_caption(raw: str, *, max_chars: int) -> str:
    """Normalise a caption and enforce the length rules, raising CaptionError when it fails them
    (or when the raw text holds what no database column can store)."""
    if _UNSTORABLE.search(raw):
        raise CaptionError(CAPTION_UNSTORABLE)
    text = normalize_caption(raw)
    if not text:
        raise CaptionError(CAPTION_EMPTY)
    if len(text) > max_chars:
        raise CaptionError(CAPTION_TOO_LONG.format(max_chars=max_chars))
    return text
