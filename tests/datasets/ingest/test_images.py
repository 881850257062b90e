import io
import re

import pytest
from PIL import Image as PILImage

from datasets.ingest.images import (
    IMAGE_EMPTY,
    IMAGE_UNREADABLE,
    ImageRejected,
    check_image,
    content_sha256,
)
from tests.factories import image_bytes

LIMITS = {"max_bytes": 20 * 2**20, "max_pixels": 50_000_000}


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")])
def test_accepted_formats_keep_their_bytes_when_clean(fmt, ext):
    data = image_bytes(fmt=fmt, size=(40, 30))
    checked = check_image(data, **LIMITS)
    assert (checked.format, checked.extension) == (fmt, ext)
    assert (checked.width, checked.height) == (40, 30)
    assert checked.content == data
    assert checked.sha256 == content_sha256(data)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_refused_by_name(fmt):
    with pytest.raises(ImageRejected, match=f"{fmt} images are not accepted"):
        check_image(image_bytes(fmt=fmt), **LIMITS)


def test_garbage_and_empty_files_are_refused():
    with pytest.raises(ImageRejected, match=re.escape(IMAGE_UNREADABLE)):
        check_image(b"this is a text file, not a picture", **LIMITS)
    with pytest.raises(ImageRejected, match=IMAGE_EMPTY):
        check_image(b"", **LIMITS)


def test_truncated_image_is_refused():
    data = image_bytes(fmt="PNG", size=(200, 200))
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        check_image(data[: len(data) // 2], **LIMITS)


def test_size_limit():
    data = image_bytes(fmt="PNG", size=(100, 100))
    with pytest.raises(ImageRejected, match="limit is"):
        check_image(data, max_bytes=len(data) - 1, max_pixels=LIMITS["max_pixels"])


def test_decompression_bomb_is_refused_from_the_header():
    # A 1-bit 20000x20000 PNG is tiny on disk (a few KB) but 400 megapixels once decoded.
    buffer = io.BytesIO()
    PILImage.new("1", (20_000, 20_000)).save(buffer, format="PNG")
    bomb = buffer.getvalue()
    assert len(bomb) < 200_000
    with pytest.raises(ImageRejected, match="400 megapixels; the limit is 50"):
        check_image(bomb, **LIMITS)


def test_pixel_limit_is_a_setting():
    data = image_bytes(size=(100, 100))
    with pytest.raises(ImageRejected, match="megapixels"):
        check_image(data, max_bytes=LIMITS["max_bytes"], max_pixels=9_999)


def _jpeg_with_exif(*, orientation: int, with_gps: bool) -> bytes:
    picture = PILImage.new("RGB", (60, 20), (200, 10, 10))
    picture.paste((10, 10, 200), (0, 0, 10, 20))  # a blue stripe on the left edge
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "CameraMaker"
    if with_gps:
        exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def test_exif_orientation_is_applied_and_metadata_stripped():
    data = _jpeg_with_exif(orientation=6, with_gps=True)  # 6 = rotate 90° clockwise to display
    assert PILImage.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the GPS is really there
    checked = check_image(data, **LIMITS)
    stored = PILImage.open(io.BytesIO(checked.content))
    assert (checked.width, checked.height) == (20, 60) == stored.size
    assert not stored.getexif()
    assert b"CameraMaker" not in checked.content
    # The blue stripe that was on the left is on top after the clockwise rotation.
    red, _green, blue = stored.convert("RGB").getpixel((10, 2))
    assert blue > 150 and red < 100
    assert checked.sha256 == content_sha256(data)  # identity stays the uploaded bytes


def test_extension_does_not_matter_content_decides():
    png = image_bytes(fmt="PNG")
    # The caller passes only bytes; a PNG named photo.jpg is a PNG.
    assert check_image(png, **LIMITS).extension == ".png"
