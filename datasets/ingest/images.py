"""Checking image files before they are stored: format by content, size and pixel limits, orientation,
metadata.

Pure functions over bytes (Pillow, no database), so the same rules serve browser uploads, the API,
zip archives and the import commands.

Metadata is found by walking the container (JPEG segments, PNG chunks, WebP RIFF chunks) against
an allow-list of what decoding and colour need, rather than by asking Pillow which keys it
happened to parse: a PNG ``tEXt`` chunk named ``GPSPosition`` or a JPEG ``COM`` segment is found
as surely as EXIF. A file with anything else, or with bytes after its end, is re-encoded from its
pixels alone, with an embedded ICC profile converted to sRGB first (so no profile needs keeping).
"""

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps, UnidentifiedImageError

IMAGE_EMPTY = "The file is empty."
# Sizes are in binary units (MiB = 2**20 bytes), as the limits are set.
IMAGE_TOO_LARGE = "The file is {size_mb:.1f} MiB; the limit is {limit_mb:.3g} MiB."
# When reading stopped one byte past the limit, the true size is not known: say only that.
IMAGE_OVER_LIMIT = "The file is larger than the limit of {limit_mb:.3g} MiB."
IMAGE_UNREADABLE = "Not a readable image (JPEG, PNG or WebP expected)."
IMAGE_FORMAT_REFUSED = "{format} images are not accepted; use JPEG, PNG or WebP."
IMAGE_TOO_MANY_PIXELS = "The image has {megapixels:.0f} megapixels; the limit is {limit:.0f}."
IMAGE_CORRUPT = "The image data is damaged or truncated: {detail}"

# Extension by decoded format: the stored name follows the content, never the uploaded name.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
# What decoding and colour need, per container; everything else is metadata.
_JPEG_KEPT = {0xE0, 0xEE}  # APP0 (JFIF), APP14 (Adobe: the colour transform of CMYK/YCCK)
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length
_PNG_KEPT = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT"}
_PNG_KEPT |= {b"bKGD", b"pHYs"}
_WEBP_KEPT = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"}


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
        if len(data) == max_bytes + 1:  # the caller read no further than it had to
            raise ImageRejected(IMAGE_OVER_LIMIT.format(limit_mb=max_bytes / 2**20))
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
    if found := metadata_found(data, image_format):
        content = _cut_without_reencoding(data, picture, image_format, found)
        if content is None:
            content = _reencode_without_metadata(picture, image_format, data)
            width, height = PILImage.open(io.BytesIO(content)).size
    return CheckedImage(
        content=content,
        sha256=content_sha256(data),
        width=width,
        height=height,
        format=image_format,
        extension=EXTENSIONS[image_format],
    )


def declared_pixels(handle: BinaryIO) -> int | None:
    """Width × height as the image's header declares it, read without decoding a pixel.

    ``handle`` is a seekable binary file, left at its start. None when the file is not an image
    Pillow can open (it will be refused at once, without decoding). A header past Pillow's own
    bomb limit reports that limit's count, so any caller's budget is exceeded. The count bounds
    the memory and time that checking the image costs, whatever the file's size in bytes.
    """
    handle.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            with PILImage.open(handle) as header:
                width, height = header.size
        except PILImage.DecompressionBombError:
            width, height = 2 * (PILImage.MAX_IMAGE_PIXELS or 0) + 1, 1
        except Exception:  # Pillow raises many types for files that are not images
            width, height = 0, 0
        finally:
            handle.seek(0)
    return width * height or None


def metadata_found(data: bytes, image_format: str) -> list[str]:
    """Names of the segments or chunks in the file beyond what decoding and colour need.

    ``["COM", "APP1"]`` for a JPEG with a comment and EXIF, ``["tEXt"]`` for a PNG with a text
    chunk, ``["trailing data"]`` for bytes after the image's end. Empty for a clean file. A
    container too damaged to walk reports ``["unparsed"]``, so it is re-encoded rather than kept.
    """
    try:
        if image_format == "JPEG":
            return _jpeg_extras(data)
        if image_format == "PNG":
            return _png_extras(data)
        if image_format == "WEBP":
            return _webp_extras(data)
    except (IndexError, struct.error, ValueError):
        return ["unparsed"]
    return []


def to_srgb(picture: PILImage.Image) -> PILImage.Image:
    """The picture's pixels in sRGB with no ICC profile attached (a copy when converted).

    Colour-managed images (Display P3, Adobe RGB, CMYK with a press profile) are converted with
    LittleCMS; a profile that cannot be read, or a grey one, is dropped with the pixels kept.
    """
    icc = picture.info.get("icc_profile")
    if not icc:
        return picture
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if picture.mode in ("RGB", "RGBA", "CMYK") and not ImageCms.getProfileDescription(
            source
        ).strip().startswith("sRGB"):
            mode = "RGBA" if picture.mode == "RGBA" else "RGB"
            converted = ImageCms.profileToProfile(
                picture, source, ImageCms.createProfile("sRGB"), outputMode=mode
            )
            if converted is not None:
                picture = converted
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        pass  # an unreadable profile carries no colour we can honour
    picture.info.pop("icc_profile", None)
    return picture


def to_8bit(picture: PILImage.Image) -> PILImage.Image:
    """A greyscale picture of more than 8 bits per pixel as 8-bit "L", its range scaled, not
    clipped; any other picture unchanged.

    Pillow's own conversion of I;16/I to L clips every value above 255 to white, so a 16-bit
    PNG (scientific and medical images often are) became a white square. Integer modes (I;16*,
    and I, which 16-bit files also open as) are scaled from 0–65535; float pictures (F) from
    their own minimum–maximum (they have no fixed range).
    """
    if picture.mode.startswith("I;16") or picture.mode == "I":
        values = np.asarray(picture, dtype=np.float64) / 257.0
    elif picture.mode == "F":
        values = np.asarray(picture, dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
        values = (values - low) * (255.0 / (high - low)) if high > low else values * 0.0
    else:
        return picture
    return PILImage.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # 2-D uint8: L


def _reencode_without_metadata(picture: PILImage.Image, image_format: str, data: bytes) -> bytes:
    """Apply the EXIF orientation to the pixels, convert to sRGB, and save the pixels alone."""
    upright = ImageOps.exif_transpose(picture)
    if upright is picture:
        upright = picture.copy()
    upright.info = {"icc_profile": picture.info.get("icc_profile")}
    upright = to_srgb(upright)
    transparency = picture.info.get("transparency")
    # Pillow writes whatever is left in .info (a JPEG comment, for one): start from nothing.
    upright.info = {}
    options: dict = {}
    if image_format == "JPEG":
        options["quality"] = 95
    elif image_format == "PNG":
        if transparency is not None and upright.mode in ("P", "L", "RGB"):
            options["transparency"] = transparency
    elif image_format == "WEBP":
        if b"VP8L" in data[12:64]:
            options["lossless"] = True
        else:
            options["quality"] = 95
    buffer = io.BytesIO()
    upright.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _cut_without_reencoding(
    data: bytes, picture: PILImage.Image, image_format: str, found: list[str]
) -> bytes | None:
    """The file with its metadata segments or chunks cut out and nothing after its end, the
    compressed pixels kept byte for byte (no second lossy encoding, and much cheaper), or None
    when only re-encoding will do: an orientation to apply, a colour profile to convert, a
    container other than JPEG/PNG, or anything in ``found`` that is not plainly removable."""
    cuttable = _JPEG_CUTTABLE if image_format == "JPEG" else _PNG_CUTTABLE
    if image_format not in ("JPEG", "PNG") or not set(found) <= cuttable:
        return None
    if picture.info.get("icc_profile") or picture.getexif().get(_ORIENTATION, 1) != 1:
        return None
    try:
        if image_format == "JPEG":
            spans, end = _jpeg_walk(data)
        else:
            spans, end = _png_walk(data)
    except (IndexError, struct.error, ValueError):
        return None
    if end is None:
        return None
    parts, at = [], 0
    for start, stop, _name in spans:
        parts.append(data[at:start])
        at = stop
    parts.append(data[at:end])
    content = b"".join(parts)
    # What is stored must be what the checks passed: the same picture, and nothing left over.
    try:
        cut = PILImage.open(io.BytesIO(content))
    except Exception:  # Pillow raises many types for damaged data
        return None
    same = (cut.format, cut.size, cut.mode) == (picture.format, picture.size, picture.mode)
    if not same or metadata_found(content, image_format):
        return None
    return content


# What may be cut out of a file without touching its pixels (see _cut_without_reencoding).
_ORIENTATION = 0x0112
_JPEG_CUTTABLE = {f"APP{n}" for n in range(1, 16) if n not in (0, 14)} | {"COM", "trailing data"}
_PNG_CUTTABLE = {"tEXt", "zTXt", "iTXt", "eXIf", "tIME", "trailing data"}


def _jpeg_extras(data: bytes) -> list[str]:
    spans, end = _jpeg_walk(data)
    found = [name for _start, _stop, name in spans]
    if end is None:
        found.append("no end marker")
    elif data[end:].strip(b"\x00"):
        found.append("trailing data")
    return found


def _jpeg_walk(data: bytes) -> tuple[list[tuple[int, int, str]], int | None]:
    """The file's metadata segments as (start, stop, name) and where its end marker ends (None
    without one). Raises IndexError, struct.error or ValueError for a container too damaged to
    walk."""
    spans: list[tuple[int, int, str]] = []
    at = 2  # after SOI
    scanning = False
    while at < len(data):
        if data[at] != 0xFF:
            if not scanning:
                raise ValueError("no marker where one is due")
            at = data.find(b"\xff", at)
            if at < 0:
                break
            continue
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if scanning and (marker == 0x00 or marker in _JPEG_STANDALONE):
            at += 2  # stuffed byte or restart marker inside entropy-coded data
            continue
        if marker == 0xD9:  # EOI
            return spans, at + 2
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xE0 <= marker <= 0xEF and marker not in _JPEG_KEPT:
            spans.append((at, at + 2 + length, f"APP{marker - 0xE0}"))
        elif marker == 0xFE:
            spans.append((at, at + 2 + length, "COM"))
        at += 2 + length
        # After a start-of-scan header comes entropy-coded data, until the next real marker.
        scanning = marker == 0xDA
    return spans, None


def _png_extras(data: bytes) -> list[str]:
    spans, end = _png_walk(data)
    found = [name for _start, _stop, name in spans]
    if end is None:
        found.append("no end chunk")
    elif data[end:]:
        found.append("trailing data")
    return found


def _png_walk(data: bytes) -> tuple[list[tuple[int, int, str]], int | None]:
    """The file's chunks beyond what decoding and colour need as (start, stop, name), and where
    its IEND chunk ends (None without one)."""
    spans: list[tuple[int, int, str]] = []
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind not in _PNG_KEPT:
            spans.append((at, at + 12 + length, kind.decode("latin-1")))
        at += 12 + length
        if kind == b"IEND":
            return spans, at
    return spans, None


def _webp_extras(data: bytes) -> list[str]:
    found: list[str] = []
    (riff_size,) = struct.unpack("<I", data[4:8])
    end = 8 + riff_size
    at = 12
    while at + 8 <= min(end, len(data)):
        kind, length = struct.unpack("<4sI", data[at : at + 8])
        if kind not in _WEBP_KEPT:
            found.append(kind.decode("latin-1").strip())
        at += 8 + length + (length & 1)
    if len(data) > end:
        found.append("trailing data")
    return found


def _too_many_pixels_from(exc: Exception, max_pixels: int) -> str:
    # Pillow's message carries the pixel count: "Image size (N pixels) exceeds limit ..."
    words = str(exc).replace("(", " ").split()
    count = next((int(word) for word in words if word.isdigit()), 0)
    return IMAGE_TOO_MANY_PIXELS.format(megapixels=count / 1e6, limit=max_pixels / 1e6)
