"""Quality filters for images and captions, without the ORM.

Each check returns the flags that apply, as module constants carrying a reason code (stored
with the item) and a message (shown to the manager). Flagged items get no tasks and stay out
of releases unless a manager overrides; nothing here deletes anything. Thresholds are a
project's settings, passed in as one frozen dataclass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from datasets.curation.caption_dedup import caption_key
from datasets.ingest.segmentation import caption_length, is_letter, tokens, visible_characters


@dataclass(frozen=True)
class QualityFlag:
    """Why an item was flagged: a stable ``code`` and a human ``message``."""

    code: str
    message: str


IMAGE_TOO_SMALL = QualityFlag(
    code="image_too_small", message="The image is smaller than the project's minimum resolution."
)
IMAGE_EXTREME_ASPECT_RATIO = QualityFlag(
    code="image_extreme_aspect_ratio",
    message="The image is far wider than it is tall, or far taller than it is wide.",
)
IMAGE_BLANK = QualityFlag(code="image_blank", message="The image is almost uniform (blank).")
CAPTION_TOO_SHORT = QualityFlag(
    code="caption_too_short",
    message="The caption has too few words (characters, in scripts written without spaces).",
)
CAPTION_TOO_LONG = QualityFlag(
    code="caption_too_long",
    message="The caption has too many words (characters, in scripts written without spaces).",
)
CAPTION_FEW_LETTERS = QualityFlag(
    code="caption_few_letters", message="The caption is mostly digits, symbols or punctuation."
)
CAPTION_REPEATED_TOKEN = QualityFlag(
    code="caption_repeated_token", message="One word makes up most of the caption."
)

# Uniformity is judged on a tiny greyscale thumbnail: cheap, and blind to JPEG noise.
_THUMBNAIL_SIZE = (32, 32)


@dataclass(frozen=True)
class QualityThresholds:
    """A project's quality settings; the defaults suit CLIP-style 224-pixel training."""

    # Half of a 224-pixel model input: anything smaller is upsampled more than twofold.
    image_min_width: int = 112
    image_min_height: int = 112
    # Longer side over shorter side; a centre crop of a 3:1 panorama keeps a third of it.
    image_max_aspect_ratio: float = 3.0
    # Standard deviation of the 32×32 greyscale thumbnail, on 0–255. The least varied of the
    # 1,000 Flickr8k photos in shared/data is at 14; a flat colour is 0 and a faint 10-level gradient about 3.
    image_min_std: float = 5.0
    # Flickr8k's shortest real captions have 3 or 4 words ("a man snoring"). In scripts
    # written without spaces a word is a fixed number of characters (datasets/ingest/segmentation.py):
    # 3 Chinese characters, 6 Japanese, 9 Thai.
    caption_min_words: int = 3
    caption_max_words: int = 60
    # Letters over non-space characters (grapheme clusters, so combining marks belong to their
    # letter); ordinary captions are above 0.9.
    caption_min_letter_ratio: float = 0.6
    # One word this share of all words, at least this many times ("dog dog dog"); in scripts
    # written without spaces one character ("狗狗狗").
    caption_max_token_share: float = 0.5
    caption_repeat_min_count: int = 3


QUALITY_THRESHOLDS_DEFAULT = QualityThresholds()


def _flattened_grey(image: Image.Image) -> Image.Image:
    # Content drawn only through transparency would vanish in a plain greyscale conversion.
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return image.convert("L")


def image_pixel_std(*, image: Image.Image) -> float:
    """Standard deviation of the image's 32×32 greyscale thumbnail, on 0–255."""
    thumbnail = _flattened_grey(image).resize(_THUMBNAIL_SIZE, Image.Resampling.BOX)
    return float(np.asarray(thumbnail, dtype=np.float32).std())


def image_quality_flags(
    *, image: Image.Image, thresholds: QualityThresholds = QUALITY_THRESHOLDS_DEFAULT
) -> tuple[QualityFlag, ...]:
    """Flags for an image: too small, extreme aspect ratio, almost blank."""
    flags = []
    width, height = image.size
    if width < thresholds.image_min_width or height < thresholds.image_min_height:
        flags.append(IMAGE_TOO_SMALL)
    if max(width, height) > thresholds.image_max_aspect_ratio * max(1, min(width, height)):
        flags.append(IMAGE_EXTREME_ASPECT_RATIO)
    if image_pixel_std(image=image) < thresholds.image_min_std:
        flags.append(IMAGE_BLANK)
    return tuple(flags)


def _repeat_units(text: str) -> list[str]:
    """The caption's case-folded words for the repeated-word check. In scripts written without
    spaces a doubled character is one word (Chinese reduplication: 狗狗 "doggy", 妈妈, 看看),
    while three or more in a row stay as many ("狗狗狗", "哈哈哈哈")."""
    units: list[str] = []
    found = tokens(caption_key(text=text))
    index = 0
    while index < len(found):
        token = found[index]
        end = index + 1
        while (
            token.unspaced
            and end < len(found)
            and found[end].run == token.run
            and found[end].text == token.text
        ):
            end += 1
        units.extend([token.text] * (1 if end - index == 2 else end - index))
        index = end
    return units


def caption_quality_flags(
    *, text: str, thresholds: QualityThresholds = QUALITY_THRESHOLDS_DEFAULT
) -> tuple[QualityFlag, ...]:
    """Flags for a caption: too short, too long, too few letters, one word repeated.

    Lengths follow :func:`datasets.ingest.segmentation.caption_length` (UAX #29 words; in
    scripts written without spaces, characters converted to words); the letter ratio is taken
    over grapheme clusters; the repeated word is case-folded.
    """
    flags = []
    length = caption_length(text)
    if length.below(thresholds.caption_min_words):
        flags.append(CAPTION_TOO_SHORT)
    if length.above(thresholds.caption_max_words):
        flags.append(CAPTION_TOO_LONG)
    visible = visible_characters(text)
    letters = sum(is_letter(c) for c in visible)
    if letters < thresholds.caption_min_letter_ratio * len(visible) or not visible:
        flags.append(CAPTION_FEW_LETTERS)
    words = _repeat_units(text)
    if words:
        _, top = Counter(words).most_common(1)[0]
        if (
            top >= thresholds.caption_repeat_min_count
            and top >= thresholds.caption_max_token_share * len(words)
        ):
            flags.append(CAPTION_REPEATED_TOKEN)
    return tuple(flags)
