"""Caption text rules shared by every way a caption enters Concord (import, API, annotators)."""

import re
import unicodedata

CAPTION_EMPTY = "Caption is empty."
CAPTION_TOO_LONG = "Caption is longer than {max_chars} characters."
CAPTION_UNSTORABLE = "Caption contains a NUL character or an unpaired surrogate."

# Zero-width and direction-control characters are invisible yet change equality and tokenisation.
_INVISIBLE = {
    "\u200b",  # zero width space
    "\u200c",  # zero width non-joiner
    "\u200d",  # zero width joiner
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark / zero width no-break space
    "\u00ad",  # soft hyphen
    "\u180e",  # mongolian vowel separator
}
_WHITESPACE = re.compile(r"\s+")
# The raw text is stored too, and PostgreSQL refuses these in any text column.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class CaptionError(ValueError):
    """A caption that cannot be stored, with a message fit for the person who wrote it."""


def normalize_caption(raw: str) -> str:
    """The stored, comparable form of a caption.

    NFC so that composed and decomposed accents compare equal; control and format characters
    (zero-width, bidi overrides) dropped, except that line breaks and tabs become spaces; runs of
    whitespace collapsed to one space; ends trimmed. Case and punctuation are kept: they carry meaning
    for captions ("A dog" vs "a dog." differ only for dedup, which has its own, coarser key).
    """
    text = unicodedata.normalize("NFC", raw)
    kept = []
    for char in text:
        if char in _INVISIBLE:
            continue
        category = unicodedata.category(char)
        if category == "Cc":
            kept.append(" " if char.isspace() else "")
        elif category == "Cf":
            continue
        else:
            kept.append(char)
    return _WHITESPACE.sub(" ", "".join(kept)).strip()


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
