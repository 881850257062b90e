"""Image and caption quality flags, one positive and one negative case each."""

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from datasets.curation.quality import (
    CAPTION_FEW_LETTERS,
    CAPTION_REPEATED_TOKEN,
    CAPTION_TOO_LONG,
    CAPTION_TOO_SHORT,
    IMAGE_BLANK,
    IMAGE_EXTREME_ASPECT_RATIO,
    IMAGE_TOO_SMALL,
    QUALITY_THRESHOLDS_DEFAULT,
    QualityThresholds,
    caption_quality_flags,
    image_pixel_std,
    image_quality_flags,
)


def _photo_like(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(width * 7 + height)
    pixels = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)


def _through_jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=60)
    buffer.seek(0)
    return Image.open(buffer)


def test_a_normal_image_has_no_flags():
    assert image_quality_flags(image=_through_jpeg(_photo_like(320, 240))) == ()


def test_small_image_is_flagged():
    assert image_quality_flags(image=_photo_like(100, 300)) == (IMAGE_TOO_SMALL,)
    assert image_quality_flags(image=_photo_like(112, 112)) == ()


def test_extreme_aspect_ratio_is_flagged():
    assert image_quality_flags(image=_photo_like(1000, 200)) == (IMAGE_EXTREME_ASPECT_RATIO,)
    assert image_quality_flags(image=_photo_like(600, 200)) == ()


def test_blank_image_is_flagged_even_with_jpeg_noise_or_a_faint_gradient():
    flat = _through_jpeg(Image.new("RGB", (300, 300), (250, 250, 245)))
    gradient = Image.fromarray(
        np.tile(np.linspace(120, 130, 300).astype(np.uint8), (300, 1)), mode="L"
    )

    assert image_quality_flags(image=flat) == (IMAGE_BLANK,)
    assert image_quality_flags(image=gradient) == (IMAGE_BLANK,)


def test_sparse_drawing_and_transparent_content_are_not_blank():
    drawing = Image.new("RGB", (300, 300), "white")
    ImageDraw.Draw(drawing).rectangle((100, 100, 160, 160), fill="black")
    # RGB is black everywhere; the shape exists only in the alpha channel.
    transparent = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(transparent).ellipse((50, 50, 250, 250), fill=(0, 0, 0, 255))

    assert image_quality_flags(image=drawing) == ()
    assert image_quality_flags(image=transparent) == ()
    assert image_pixel_std(image=transparent) > 50


def test_image_thresholds_come_from_the_project():
    strict = QualityThresholds(image_min_width=400, image_min_height=400)

    assert image_quality_flags(image=_photo_like(320, 240), thresholds=strict) == (IMAGE_TOO_SMALL,)


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("A black dog is digging in the snow.", ()),
        ("A", (CAPTION_TOO_SHORT,)),
        ("broken image", (CAPTION_TOO_SHORT,)),
        ("a man snoring", ()),
        ("word " * 61, (CAPTION_TOO_LONG, CAPTION_REPEATED_TOKEN)),
        (" ".join(chr(97 + k % 26) + chr(97 + k // 26) for k in range(60)), ()),
        ("IMG_2041.JPG 12:30 #1 ###", (CAPTION_FEW_LETTERS,)),
        ("Two dogs, 3 cats and 1 bird.", ()),
        ("dog dog dog", (CAPTION_REPEATED_TOKEN,)),
        ("The the THE the cat", (CAPTION_REPEATED_TOKEN,)),
        ("a man and a woman and a child", ()),
        ("", (CAPTION_TOO_SHORT, CAPTION_FEW_LETTERS)),
    ],
)
def test_caption_flags(text, flags):
    assert caption_quality_flags(text=text) == flags


def test_caption_thresholds_come_from_the_project():
    lenient = dataclasses.replace(QUALITY_THRESHOLDS_DEFAULT, caption_min_words=1)

    assert caption_quality_flags(text="Dog", thresholds=lenient) == ()


def test_flags_have_distinct_codes_and_messages():
    flags = [
        IMAGE_TOO_SMALL,
        IMAGE_EXTREME_ASPECT_RATIO,
        IMAGE_BLANK,
        CAPTION_TOO_SHORT,
        CAPTION_TOO_LONG,
        CAPTION_FEW_LETTERS,
        CAPTION_REPEATED_TOKEN,
    ]

    assert len({f.code for f in flags}) == len({f.message for f in flags}) == len(flags)
