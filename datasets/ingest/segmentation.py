"""Words, characters and letters of a caption in any script, without the ORM.

Words are the word-like segments of Unicode's default word boundaries (UAX #29, by ``uniseg``,
which passes Unicode's own WordBreakTest); characters are extended grapheme clusters (what a
reader sees as one character: ``क्या``, ``👩🏽‍💻``, a flag). Scripts written without spaces
between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar) have no word boundaries that
UAX #29 can find without a dictionary; there each character is a segment, and a length rule
counts characters, converted to words by a fixed number of characters per word:

* Chinese (Han without kana): 1. A character is a morpheme and, in short descriptions, most
  often a word by itself (狗咬球, "dog bites ball"). On the sample's Flickr8K-CN captions of the
  same 1,000 images Chinese captions have 0.74 characters per English word of Flickr8k's, so
  counting a character as a word is never stricter than English.
* Japanese (any kana in the caption): 2. Kana are syllables; about two make a word. A choice,
  not a measurement.
* Thai and the other scripts of Line_Break=SA (Lao, Khmer, Myanmar, Tai scripts): 3. The Thai
  National Corpus word frequencies shipped with pythainlp give 3.19 grapheme clusters per word
  token (33 million tokens); the other scripts take Thai's figure, unmeasured.

Everything here is deterministic and independent of the project's language, so the server's
quality flags, the annotator's caption rules and the page's live check (which asks the server)
always agree.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import regex
from uniseg.wordbreak import words as _uax29_segments

# Han, kana, and the scripts whose line breaking needs a dictionary (UAX #14 class SA).
_UNSPACED = regex.compile(r"[\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}\p{lb=SA}]")
# Counting uses the Script property proper: punctuation such as 。 is shared by every CJK
# script (Script_Extensions) and would make a Chinese caption look Japanese.
_KANA = regex.compile(r"[\p{sc=Hiragana}\p{sc=Katakana}]")
_UNSPACED_LETTER = regex.compile(r"[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{lb=SA}]")
_SOUTHEAST_ASIAN = regex.compile(r"\p{lb=SA}")
_GRAPHEME = regex.compile(r"\X")

CHARS_PER_WORD_CHINESE = 1
CHARS_PER_WORD_JAPANESE = 2
CHARS_PER_WORD_SOUTHEAST_ASIAN = 3

UNIT_WORDS = "words"
UNIT_CHARACTERS = "characters"


def graphemes(text: str) -> list[str]:
    """Extended grapheme clusters of ``text`` (UAX #29), in order."""
    return _GRAPHEME.findall(text)


def _is_wordlike(segment: str) -> bool:
    # A segment that starts with a letter, a digit or a combining mark (one standing alone
    # still belongs to a word) is a word; spaces, punctuation and emoji are not, even when a
    # variation selector (a mark) follows the emoji, as in 🏖️.
    return bool(segment) and unicodedata.category(segment[0])[0] in "LMN"


def is_unspaced(segment: str) -> bool:
    """True when ``segment`` starts in a script written without spaces between words."""
    return bool(segment) and _UNSPACED.match(segment) is not None


@lru_cache(maxsize=4096)
def _segments(text: str) -> tuple[str, ...]:
    return tuple(_uax29_segments(text))


@dataclass(frozen=True)
class Token:
    """A word of a spaced script, or one character of a script written without spaces."""

    text: str
    unspaced: bool
    # Tokens of one unspaced run (no space, punctuation or spaced word between them) share it.
    run: int


def tokens(text: str) -> tuple[Token, ...]:
    """The caption's words (UAX #29 word-like segments) with unspaced scripts split into
    characters, in order and as written (no case folding)."""
    out: list[Token] = []
    run = 0
    previous_unspaced = False
    for segment in _segments(text):
        if not _is_wordlike(segment):
            previous_unspaced = False
            continue
        if is_unspaced(segment):
            if not previous_unspaced:
                run += 1
            out.extend(Token(text=g, unspaced=True, run=run) for g in graphemes(segment))
            previous_unspaced = True
        else:
            out.append(Token(text=segment, unspaced=False, run=0))
            previous_unspaced = False
    return tuple(out)


def chars_per_word(text: str) -> int:
    """Characters that count as one word for this caption's unspaced script (see module doc)."""
    if _KANA.search(text):
        return CHARS_PER_WORD_JAPANESE
    southeast = len(_SOUTHEAST_ASIAN.findall(text))
    if southeast and southeast * 2 > len(_UNSPACED_LETTER.findall(text)):
        return CHARS_PER_WORD_SOUTHEAST_ASIAN
    return CHARS_PER_WORD_CHINESE


@dataclass(frozen=True)
class CaptionLength:
    """How long a caption is: ``words`` of spaced scripts, ``characters`` of unspaced ones.

    ``units`` is the length on one integer scale, in characters: a spaced word counts as
    ``chars_per_word`` characters. A rule of N words is a rule of N × ``chars_per_word`` units,
    which for an English caption is simply N words.
    """

    words: int
    characters: int
    chars_per_word: int

    @property
    def units(self) -> int:
        return self.words * self.chars_per_word + self.characters

    @property
    def unit(self) -> str:
        """What to call the length when speaking to a person: characters when most of the
        caption is in an unspaced script, else words."""
        return UNIT_CHARACTERS if self.characters and self.characters >= self.words else UNIT_WORDS

    def below(self, min_words: int) -> bool:
        """Shorter than ``min_words`` words."""
        return self.units < min_words * self.chars_per_word

    def above(self, max_words: int) -> bool:
        """Longer than ``max_words`` words."""
        return self.units > max_words * self.chars_per_word

    def shown(self, *, rounding: str = "down") -> int:
        """The length in :attr:`unit`; in words, unspaced characters are converted and rounded
        ``down`` (for a minimum: "you have 3" never hides a 3.5 that fails "at least 4") or
        ``up`` (for a maximum)."""
        if self.unit == UNIT_CHARACTERS:
            return self.units
        exact = self.units / self.chars_per_word
        return math.floor(exact) if rounding == "down" else math.ceil(exact)

    def limit(self, words: int) -> int:
        """A limit of ``words`` words expressed in :attr:`unit`."""
        return words * self.chars_per_word if self.unit == UNIT_CHARACTERS else words


def caption_length(text: str) -> CaptionLength:
    """Words and unspaced characters of a caption (see :class:`CaptionLength`)."""
    found = tokens(text)
    unspaced = sum(t.unspaced for t in found)
    return CaptionLength(
        words=len(found) - unspaced,
        characters=unspaced,
        chars_per_word=chars_per_word(text) if unspaced else 1,
    )


def is_letter(grapheme: str) -> bool:
    """A character that is a letter: its base is a letter, or it is a combining mark standing
    alone. Combining marks inside a cluster (Hindi vowel signs, Hebrew points, Arabic
    tashkeel) belong to their letter, so they count as letters too."""
    return bool(grapheme) and unicodedata.category(grapheme[0])[0] in "LM"


def visible_characters(text: str) -> list[str]:
    """Grapheme clusters that are not whitespace (what a letter ratio is taken over)."""
    return [g for g in graphemes(text) if not g.isspace()]
