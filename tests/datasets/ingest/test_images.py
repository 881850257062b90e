import io
import re
import struct
import zlib

import pytest
from PIL import Image as PILImage
from PIL import ImageCms

from datasets.ingest.images import (
    IMAGE_EMPTY,
    IMAGE_UNREADABLE,
    ImageRejected,
    check_image,
    content_sha256,
    metadata_found,
)
from datasets.ingest.services.thumbnails import thumbnail_bytes
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
        check_image(data, max_bytes=len(data) - 2, max_pixels=LIMITS["max_pixels"])
    # One byte past the limit is where a caller stops reading: the true size is unknown there,
    # so the message does not pretend to know it (a 23.5 MiB file read "20.0 MB").
    with pytest.raises(ImageRejected, match=r"^The file is larger than the limit of"):
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


# --- Metadata: every container, every carrier --------------------------------------------------

SECRETS = (b"SECRET", "SECRET".encode("utf-16-be"), b"GPSPosition", b"51.5007")


def _icc_with_secret() -> bytes:
    """An sRGB profile whose description was rewritten: an ICC that carries text of its own."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    original = description.strip().encode("utf-16-be")
    assert original in profile, "the description is stored as UTF-16 text"
    secret = "SECRET-ICC".encode("utf-16-be")[: len(original)].ljust(len(original), b"\0")
    return profile.replace(original, secret)


def _picture() -> PILImage.Image:
    picture = PILImage.new("RGB", (64, 48), (200, 30, 30))
    picture.paste((20, 40, 220), (0, 0, 20, 48))
    return picture


def _exif() -> PILImage.Exif:
    exif = PILImage.Exif()
    exif[0x010F] = "SECRET-camera"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}
    return exif


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">SECRET-xmp GPSPosition 51.5007</x:xmpmeta>'


def _jpeg(**options) -> bytes:
    buffer = io.BytesIO()
    _picture().save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def _png(chunks: list[tuple[bytes, bytes]] = (), **options) -> bytes:
    buffer = io.BytesIO()
    _picture().save(buffer, format="PNG", **options)
    data = buffer.getvalue()
    iend = data.rindex(b"IEND") - 4
    extra = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks
    )
    return data[:iend] + extra + data[iend:]


def _webp(**options) -> bytes:
    buffer = io.BytesIO()
    _picture().save(buffer, format="WEBP", quality=95, **options)
    return buffer.getvalue()


def _png_text(kind: bytes, text: str) -> tuple[bytes, bytes]:
    if kind == b"zTXt":
        return kind, b"GPSPosition\0\0" + zlib.compress(text.encode())
    if kind == b"iTXt":
        return kind, b"GPSPosition\0\0\0\0\0" + text.encode()
    return kind, b"GPSPosition\0" + text.encode()


CARRIERS = {
    "JPEG EXIF with GPS": ("JPEG", lambda: _jpeg(exif=_exif())),
    "JPEG comment (COM)": ("JPEG", lambda: _jpeg(comment=b"SECRET comment GPSPosition")),
    "JPEG XMP": ("JPEG", lambda: _jpeg(xmp=XMP)),
    "JPEG ICC with text": ("JPEG", lambda: _jpeg(icc_profile=_icc_with_secret())),
    "JPEG bytes after the end": ("JPEG", lambda: _jpeg() + b"SECRET trailing payload"),
    "PNG tEXt GPSPosition": ("PNG", lambda: _png([_png_text(b"tEXt", "51.5007 N SECRET")])),
    "PNG zTXt": ("PNG", lambda: _png([_png_text(b"zTXt", "51.5007 N SECRET")])),
    "PNG iTXt": ("PNG", lambda: _png([_png_text(b"iTXt", "51.5007 N SECRET")])),
    "PNG eXIf": ("PNG", lambda: _png(exif=_exif())),
    "PNG iCCP with text": ("PNG", lambda: _png(icc_profile=_icc_with_secret())),
    "PNG tIME": ("PNG", lambda: _png([(b"tIME", b"\x07\xea\x0b\x1e\x0c\x00\x00")])),
    "PNG private chunk": ("PNG", lambda: _png([(b"prVt", b"SECRET private chunk")])),
    "PNG bytes after the end": ("PNG", lambda: _png() + b"SECRET trailing payload"),
    "WebP EXIF": ("WEBP", lambda: _webp(exif=_exif())),
    "WebP XMP": ("WEBP", lambda: _webp(xmp=XMP)),
    "WebP ICC with text": ("WEBP", lambda: _webp(icc_profile=_icc_with_secret())),
}


@pytest.mark.parametrize("carrier", CARRIERS, ids=list(CARRIERS))
def test_stored_copy_and_thumbnail_carry_no_metadata(carrier):
    image_format, make = CARRIERS[carrier]
    data = make()
    assert metadata_found(data, image_format), "the test file really carries metadata"
    checked = check_image(data, **LIMITS)
    assert checked.format == image_format and checked.sha256 == content_sha256(data)
    assert metadata_found(checked.content, image_format) == []
    stored = PILImage.open(io.BytesIO(checked.content))
    assert "icc_profile" not in stored.info and not stored.getexif()
    assert not any(secret in checked.content for secret in SECRETS)
    # The pixels survive: red with a blue stripe on the left.
    assert stored.convert("RGB").getpixel((40, 20))[0] > 150
    assert stored.convert("RGB").getpixel((5, 20))[2] > 150
    for source in (checked.content, data):  # from the clean copy, and from an old stored one
        thumb = thumbnail_bytes(source, size=32)
        assert metadata_found(thumb, "JPEG") == []
        assert not any(secret in thumb for secret in SECRETS)
        assert "icc_profile" not in PILImage.open(io.BytesIO(thumb)).info


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_a_clean_file_is_stored_byte_for_byte(image_format):
    data = image_bytes(fmt=image_format)
    assert metadata_found(data, image_format) == []
    assert check_image(data, **LIMITS).content == data


# Metadata that can be cut out whole is cut out: the compressed pixels are kept byte for byte, with
# no second lossy encoding (orientation and colour profiles still need one: the tests above).
CUT_WHOLE = {
    "JPEG EXIF with GPS": (lambda: _jpeg(exif=_exif()), _jpeg),
    "JPEG comment (COM)": (lambda: _jpeg(comment=b"SECRET comment GPSPosition"), _jpeg),
    "JPEG XMP": (lambda: _jpeg(xmp=XMP), _jpeg),
    "JPEG bytes after the end": (lambda: _jpeg() + b"SECRET trailing payload", _jpeg),
    "PNG tEXt": (lambda: _png([_png_text(b"tEXt", "51.5007 N SECRET")]), _png),
    "PNG eXIf": (lambda: _png(exif=_exif()), _png),
    "PNG bytes after the end": (lambda: _png() + b"SECRET trailing payload", _png),
}


@pytest.mark.parametrize("carrier", CUT_WHOLE, ids=list(CUT_WHOLE))
def test_metadata_is_cut_out_without_encoding_the_pixels_again(carrier):
    make, clean = CUT_WHOLE[carrier]
    checked = check_image(make(), **LIMITS)
    assert checked.content == clean()


def test_a_damaged_file_with_metadata_is_still_refused():
    data = _jpeg(exif=_exif())
    with pytest.raises(ImageRejected):
        check_image(data[: len(data) * 2 // 3] + b"\xff\xd9", **LIMITS)


def test_a_rotation_named_only_in_xmp_is_still_applied():
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22'
        b'-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
        b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    checked = check_image(_jpeg(xmp=xmp), **LIMITS)  # _picture() is 64×48
    assert (checked.width, checked.height) == (48, 64)
    assert metadata_found(checked.content, "JPEG") == []
