"""Duplicate captions of one image, without the ORM.

A caption's normalised key (Unicode-compatibility form, case-folded, punctuation dropped,
whitespace collapsed) finds exact duplicates; the Jaccard similarity of the key's shingles
finds near-duplicates ("A dog runs on the beach." / "a dog runs on the beach together").
Shingles are the key's words (UAX #29) in spaced scripts and character bigrams in scripts
written without spaces, where single characters would make any two captions of a scene look
alike and whole runs would never match ("两只狗在海滩上玩" / "两只狗在海滩上玩球").
Duplicates are flagged, never deleted, so that redundant captions do not count toward an
image's caption target. An image has a handful of captions, so comparing all pairs exactly
is cheaper and simpler than MinHash.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from datasets.ingest.segmentation import tokens

# On Flickr8k's five independent captions per image, 0.3% of pairs reach 0.8 and they read
# as the same sentence with a word added or dropped; at 0.7 distinct descriptions of the
# same scene start to pair up. On Flickr8K-CN's, compared by character bigrams, 0.5% of pairs
# reach 0.8 without being identical (在攀岩的男人 / 攀岩的男人); 2.7% are identical rows.
CAPTION_SIMILARITY_DEFAULT = 0.8

DUPLICATE_EXACT = "exact"
DUPLICATE_NEAR = "near"

# Apostrophes vanish ("dog's" and "dogs" match); other punctuation separates words
# ("black-and-white" and "black and white" match).
_APOSTROPHES = re.compile(r"['’ʼ`´]")
# Emoji presentation selectors: "❤️" and "❤" are the same heart.
_VARIATION_SELECTORS = re.compile("[\ufe00-\ufe0f]")


@dataclass(frozen=True)
class CaptionDuplicate:
    """``caption_id`` repeats the earlier caption ``duplicate_of`` of the same image."""

    caption_id: int
    duplicate_of: int
    kind: str
    similarity: float


def caption_key(*, text: str) -> str:
    """Normalised form of a caption: equal keys mean the same caption.

    Punctuation, spaces and symbols other than emoji separate words; invisible format
    characters (a Persian zero width non-joiner) vanish without separating anything; combining
    marks stay with their letters; emoji stay as words of their own, so that "🐶🐶" and "🐱🐱" differ.
    """
    folded = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).casefold())
    folded = _VARIATION_SELECTORS.sub("", folded)
    out = []
    for char in folded:
        category = unicodedata.category(char)
        if category == "Cf":
            continue
        if category == "So":
            out.append(f" {char} ")
        elif category[0] in "PSZC":
            out.append(" ")
        else:
            out.append(char)
    return " ".join("".join(out).split())


def caption_words(*, text: str) -> tuple[str, ...]:
    """The words of a caption's normalised key, in order; in scripts written without spaces
    each character is a word (UAX #29 finds no other boundaries there)."""
    return tuple(token.text for token in tokens(caption_key(text=text)))


def caption_shingles(*, text: str) -> frozenset[str]:
    """What near-duplicate similarity compares: the key's words in spaced scripts, and in each
    run of an unspaced script its character bigrams (the character itself in a run of one)."""
    shingles: set[str] = set()
    run: list[str] = []
    run_id = 0

    def close() -> None:
        if len(run) == 1:
            shingles.add(run[0])
        shingles.update(a + b for a, b in pairwise(run))
        run.clear()

    for token in tokens(caption_key(text=text)):
        if token.unspaced:
            if token.run != run_id:
                close()
                run_id = token.run
            run.append(token.text)
        else:
            shingles.add(token.text)
    close()
    # Emoji are symbols, not words, yet two emoji-only captions should compare by them.
    return frozenset(shingles) or frozenset(caption_key(text=text).split())


def caption_similarity(*, a: str, b: str) -> float:
    """Jaccard similarity of the two captions' shingles (1.0 for equal keys)."""
    if caption_key(text=a) == caption_key(text=b):
        return 1.0
    shingles_a, shingles_b = caption_shingles(text=a), caption_shingles(text=b)
    union = len(shingles_a | shingles_b)
    return len(shingles_a & shingles_b) / union if union else 0.0


def caption_duplicates(
    *, captions: Iterable[tuple[int, str]], threshold: float = CAPTION_SIMILARITY_DEFAULT
) -> tuple[CaptionDuplicate, ...]:
    """Flag the captions of one image that repeat an earlier one, exactly or nearly.

    ``captions`` are (id, text) pairs; lower ids count as earlier. Each caption is compared
    with the earlier captions that were kept, so the first of a group stays unflagged and
    chains (B near A, C near B but not A) do not flag C. A near-duplicate points at the most
    similar kept caption, the earliest on ties.
    """
    kept: list[tuple[int, str, frozenset[str]]] = []
    flagged: list[CaptionDuplicate] = []
    for caption_id, text in sorted(captions):
        key = caption_key(text=text)
        words = caption_shingles(text=text)
        same = next((kid for kid, kkey, _ in kept if kkey == key), None)
        if same is not None:
            flagged.append(
                CaptionDuplicate(
                    caption_id=caption_id, duplicate_of=same, kind=DUPLICATE_EXACT, similarity=1.0
                )
            )
            continue
        best_id, best = None, 0.0
        for kid, _, kwords in kept:
            union = len(words | kwords)
            score = len(words & kwords) / union if union else 0.0
            if score > best:
                best_id, best = kid, score
        if best_id is not None and best >= threshold:
            flagged.append(
                CaptionDuplicate(
                    caption_id=caption_id,
                    duplicate_of=best_id,
                    kind=DUPLICATE_NEAR,
                    similarity=best,
                )
            )
            continue
        kept.append((caption_id, key, words))
    return tuple(flagged)
