"""The project's rules for captions written by annotators, checked live in the page and on submit.

One function, :func:`caption_check`, decides; the page's live check asks the server for its
verdict (``annotate-check``) instead of re-implementing it in JavaScript, so the browser and
the server can never disagree, in any script. Lengths follow
:func:`datasets.ingest.segmentation.caption_length`: UAX #29 words, and in scripts written
without spaces characters, with the word limits converted (a Chinese character is a word, two
Japanese characters, three Thai ones) and the messages speaking of characters there.
"""

from dataclasses import dataclass

from uniseg.wordbreak import word_boundaries

from datasets.curation.caption_dedup import caption_key
from datasets.ingest.captions import CAPTION_TOO_LONG, normalize_caption
from datasets.ingest.segmentation import UNIT_CHARACTERS, CaptionLength, caption_length

TOO_FEW_WORDS = "Write at least {minimum} {unit} (you have {count})."
TOO_MANY_WORDS = "Keep it to {maximum} {unit} (you have {count})."
BANNED_OPENING = "Don't start with “{opening}”: describe the scene directly."
REPEATED_CAPTION = "This image already has that caption; describe it in your own words."
EMPTY_CAPTION = "Write a caption first."
LENGTH_OK = "{count} {unit} ✓"


@dataclass(frozen=True)
class CaptionRules:
    min_words: int
    max_words: int
    banned_openings: tuple[str, ...]
    # The storage limit every caption has (CONCORD_MAX_CAPTION_CHARS), checked first: a longer
    # text is refused without being segmented, however it was sent.
    max_chars: int = 1000


@dataclass(frozen=True)
class CaptionCheck:
    """The verdict on a caption: every rule it breaks (empty when it may be submitted) and its
    length in the caption's own unit, for the live check ("12 characters ✓")."""

    problems: list[str]
    length: CaptionLength | None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        """ "N words ✓" / "N characters ✓" for a caption that passes; empty otherwise."""
        if self.problems or self.length is None:
            return ""
        count = self.length.shown()
        return LENGTH_OK.format(count=count, unit=unit_name(self.length.unit, count))


def unit_name(unit: str, count: int) -> str:
    """ "word(s)" or "character(s)" agreeing with ``count``."""
    singular = "character" if unit == UNIT_CHARACTERS else "word"
    return singular if count == 1 else singular + "s"


def comparison_key(text: str) -> str:
    """Case, punctuation and spacing removed, in every script: "A dog." and "a dog" are the
    same caption, and so are "一只狗。" and "一只狗"."""
    return caption_key(text=normalize_caption(text))


def word_count(text: str) -> int:
    """Words of a caption, unspaced scripts converted (see the module docstring)."""
    return caption_length(normalize_caption(text)).shown()


def _starts_with(key: str, opening_key: str) -> bool:
    # The opening must end on a word boundary of the caption (UAX #29): "There is" bans
    # "there is a dog" but not "there isnt", and "这是" bans "这是一只狗".
    return key.startswith(opening_key) and len(opening_key) in set(word_boundaries(key))


def caption_check(text: str, *, rules: CaptionRules, existing: list[str]) -> CaptionCheck:
    """Every rule the caption breaks, as messages for the annotator, and its length.

    ``existing`` are the image's captions so far (a repeat of one is refused).
    """
    normalised = normalize_caption(text)
    if not normalised:
        return CaptionCheck(problems=[EMPTY_CAPTION], length=None)
    if len(normalised) > rules.max_chars:
        return CaptionCheck(
            problems=[CAPTION_TOO_LONG.format(max_chars=rules.max_chars)], length=None
        )
    problems = []
    length = caption_length(normalised)
    if length.below(rules.min_words):
        count = length.shown(rounding="down")
        problems.append(
            TOO_FEW_WORDS.format(
                minimum=length.limit(rules.min_words),
                unit=unit_name(length.unit, length.limit(rules.min_words)),
                count=count,
            )
        )
    if length.above(rules.max_words):
        problems.append(
            TOO_MANY_WORDS.format(
                maximum=length.limit(rules.max_words),
                unit=unit_name(length.unit, length.limit(rules.max_words)),
                count=length.shown(rounding="up"),
            )
        )
    key = comparison_key(normalised)
    for opening in rules.banned_openings:
        opening_key = comparison_key(opening)
        if opening_key and _starts_with(key, opening_key):
            problems.append(BANNED_OPENING.format(opening=opening))
            break
    if key in {comparison_key(other) for other in existing}:
        problems.append(REPEATED_CAPTION)
    return CaptionCheck(problems=problems, length=length)


def caption_violations(text: str, *, rules: CaptionRules, existing: list[str]) -> list[str]:
    """Every rule the caption breaks, as messages for the annotator; empty when it is fine."""
    return caption_check(text, rules=rules, existing=existing).problems
