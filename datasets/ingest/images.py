"""Checking image files before they are stored: format by content, size and pixel limits, orientation.

Pure functions over bytes (Pillow, no database), so the same rules serve browser uploads, the API,
zip archives and the import commands.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

IMAGE_EMPTY = "The file is empty."
IMAGE_TOO_LARGE = "The file is {size_mb:.1f} MB; the limit is {limit_mb:.0f} MB."
IMAGE_UNREADABLE = "Not a readable image (JPEG, PNG or WebP expected)."
IMAGE_FORMAT_REFUSED = "{format} images are not accepted; use JPEG, PNG or WebP."
IMAGE_TOO_MANY_PIXELS = "The image has {megapixels:.0f} megapixels; the limit is {limit:.0f}."
IMAGE_CORRUPT = "The image data is damaged or truncated: {detail}"

# Extension by decoded format: the stored name follows the content, never the uploaded name.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
_ORIENTATION_TAG = 0x0112
_METADATA_KEYS = ("exif", "xmp", "XML:com.adobe.xmp", "photoshop", "comment")


class ImageRejected(ValueError):
    """An upload that is not stored, with the reason shown to the uploader."""


@dataclass(frozen=True)
class CheckedImage:
    content: bytes  # what is stored: the original bytes, or a re-encoded copy without metadata
    sha256: str  # of the bytes as received
    width: int
    height: int
    format: str
    extension: str


def content_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_image(data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Decode and verify an image, apply its EXIF orientation and strip its metadata.

    Raises ImageRejected with a message from this module's constants. The pixel limit is checked on
    the header before any pixel is decoded, so a decompression bomb costs nothing.
    """
    if not data:
        raise ImageRejected(IMAGE_EMPTY)
    if len(data) > max_bytes:
        raise ImageRejected(
            IMAGE_TOO_LARGE.format(size_mb=len(data) / 2**20, limit_mb=max_bytes / 2**20)
        )
    with warnings.catch_warnings():
        # Our limit is usually below Pillow's; its warning would only duplicate our own check.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            header = PILImage.open(io.BytesIO(data))
        except PILImage.DecompressionBombError as exc:
            raise ImageRejected(_too_many_pixels_from(exc, max_pixels)) from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(IMAGE_UNREADABLE) from exc
        if header.format not in EXTENSIONS:
            raise ImageRejected(IMAGE_FORMAT_REFUSED.format(format=header.format or "These"))
        width, height = header.size
        if width * height > max_pixels:
            raise ImageRejected(
                IMAGE_TOO_MANY_PIXELS.format(
                    megapixels=width * height / 1e6, limit=max_pixels / 1e6
                )
            )
        try:
            header.verify()
            picture = PILImage.open(io.BytesIO(data))
            picture.load()
        except Exception as exc:  # Pillow raises many types for damaged data
            raise ImageRejected(IMAGE_CORRUPT.format(detail=exc)) from exc

    image_format = picture.format
    content = data
    if _has_metadata(picture):
        content = _reencode_without_metadata(picture, image_format)
        width, height = PILImage.open(io.BytesIO(content)).size
    return CheckedImage(
        content=content,
        sha256=content_sha256(data),
        width=width,
        height=height,
        format=image_format,
        extension=EXTENSIONS[image_format],
    )


def _has_metadata(picture: PILImage.Image) -> bool:
    return bool(picture.getexif()) or any(picture.info.get(key) for key in _METADATA_KEYS)


def _reencode_without_metadata(picture: PILImage.Image, image_format: str) -> bytes:
    """Apply the EXIF orientation to the pixels, then save without EXIF/XMP (GPS lives there)."""
    upright = ImageOps.exif_transpose(picture)
    options: dict = {"exif": b""}
    if icc := picture.info.get("icc_profile"):
        options["icc_profile"] = icc  # colour, not personal data
    if image_format in ("JPEG", "WEBP"):
        options["quality"] = 95
    buffer = io.BytesIO()
    upright.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _too_many_pixels_from(exc: Exception, max_pixels: int) -> str:
    # Pillow's message carries the pixel count: "Image size (N pixels) exceeds limit ..."
    words = str(exc).replace("(", " ").split()
    count = next((int(word) for word in words if word.isdigit()), 0)
    return IMAGE_TOO_MANY_PIXELS.format(megapixels=count / 1e6, limit=max_pixels / 1e6)
