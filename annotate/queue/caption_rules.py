"""The project's rules for captions written by annotators, checked live in the page and on submit."""

import re
import string
from dataclasses import dataclass

from datasets.ingest.captions import normalize_caption

TOO_FEW_WORDS = "Write at least {minimum} words (you have {count})."
TOO_MANY_WORDS = "Keep it to {maximum} words (you have {count})."
BANNED_OPENING = "Don't start with “{opening}”: describe the scene directly."
REPEATED_CAPTION = "This image already has that caption; describe it in your own words."
EMPTY_CAPTION = "Write a caption first."

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_WORD = re.compile(r"\w+(?:['’-]\w+)*")


@dataclass(frozen=True)
class CaptionRules:
    min_words: int
    max_words: int
    banned_openings: tuple[str, ...]


def comparison_key(text: str) -> str:
    """Case, punctuation and spacing removed: "A dog." and "a dog" are the same caption."""
    return " ".join(normalize_caption(text).casefold().translate(_PUNCTUATION).split())


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def caption_violations(text: str, *, rules: CaptionRules, existing: list[str]) -> list[str]:
    """Every rule the caption breaks, as messages for the annotator; empty when it is fine."""
    normalised = normalize_caption(text)
    if not normalised:
        return [EMPTY_CAPTION]
    problems = []
    count = word_count(normalised)
    if count < rules.min_words:
        problems.append(TOO_FEW_WORDS.format(minimum=rules.min_words, count=count))
    if count > rules.max_words:
        problems.append(TOO_MANY_WORDS.format(maximum=rules.max_words, count=count))
    key = comparison_key(normalised)
    for opening in rules.banned_openings:
        opening_key = comparison_key(opening)
        if opening_key and (key == opening_key or key.startswith(opening_key + " ")):
            problems.append(BANNED_OPENING.format(opening=opening))
            break
    if key in {comparison_key(other) for other in existing}:
        problems.append(REPEATED_CAPTION)
    return problems
