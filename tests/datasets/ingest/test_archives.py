import io
import zipfile

import pytest

from datasets.ingest.archives import ZIP_SIZE_LIED, ZIP_UNSAFE_NAME, ArchiveRejected, iter_archive
from tests.factories import image_bytes

LIMITS = {"max_files": 100, "max_total_bytes": 10 * 2**20}


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def test_members_are_read_and_clutter_skipped():
    members = list(
        iter_archive(
            _zip(
                {
                    "a.jpg": image_bytes(seed=1),
                    "sub/b.png": image_bytes(fmt="PNG"),
                    "__MACOSX/._a.jpg": b"junk",
                    "sub/.DS_Store": b"junk",
                }
            ),
            **LIMITS,
        )
    )
    assert [m.name for m in members] == ["a.jpg", "sub/b.png"]
    assert all(m.data and not m.error for m in members)


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/passwd", "a/../../b.jpg", "C:/win.jpg"])
def test_path_traversal_names_are_refused(name):
    [member] = list(iter_archive(_zip({name: image_bytes()}), **LIMITS))
    assert member.data is None and member.error == ZIP_UNSAFE_NAME


def test_too_many_files_refuses_the_archive():
    archive = _zip({f"{i}.jpg": b"x" for i in range(5)})
    with pytest.raises(ArchiveRejected, match="holds 5 files; the limit is 4"):
        list(iter_archive(archive, max_files=4, max_total_bytes=2**20))


def test_uncompressed_size_limit_refuses_the_archive():
    # 5 MB of zeros compresses to a few KB: the limit is on what it unpacks to.
    archive = _zip({"zeros.png": bytes(5 * 2**20)})
    assert len(archive.getvalue()) < 100_000
    with pytest.raises(ArchiveRejected, match="unpacks to 5 MB; the limit is 1 MB"):
        list(iter_archive(archive, max_files=10, max_total_bytes=2**20))


def test_member_that_lies_about_its_size_is_refused():
    archive = _zip({"a.jpg": b"x" * 1000})
    raw = bytearray(archive.getvalue())
    # Patch the declared uncompressed size (central directory and local header) down to 10 bytes.
    for offset in _find_all(raw, b"PK\x01\x02"):
        raw[offset + 24 : offset + 28] = (10).to_bytes(4, "little")
    for offset in _find_all(raw, b"PK\x03\x04"):
        raw[offset + 22 : offset + 26] = (10).to_bytes(4, "little")
    [member] = list(iter_archive(io.BytesIO(bytes(raw)), **LIMITS))
    # zipfile notices the mismatch (bad CRC) or our own length check does; either way nothing
    # beyond the declared size is handed on.
    assert member.data is None
    assert member.error == ZIP_SIZE_LIED or member.error.startswith("Not a readable zip")


def test_not_a_zip():
    with pytest.raises(ArchiveRejected):
        list(iter_archive(io.BytesIO(b"not a zip at all"), **LIMITS))


def _find_all(data: bytearray, needle: bytes) -> list[int]:
    found, start = [], 0
    while (index := data.find(needle, start)) != -1:
        found.append(index)
        start = index + 1
    return found
