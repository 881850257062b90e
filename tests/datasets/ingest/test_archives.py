"""Zip reading: names decoded as unzip does and refused one member at a time, members inflated in
bounded steps and checked, the archive's limits read from its directory."""

import io
import random
import tracemalloc
import zipfile

import pytest

from datasets.ingest.archives import (
    ZIP_BAD_NAME,
    ZIP_ENCRYPTED,
    ZIP_SIZE_LIED,
    ZIP_TRUNCATED,
    ZIP_UNSAFE_NAME,
    ArchiveRejected,
    MemberRefused,
    iter_archive,
    list_archive,
    read_member,
)
from tests.datasets.ingest.corpus import zip_of, zip_with_raw_names
from tests.factories import image_bytes

LIMITS = {"max_files": 100, "max_total_bytes": 10 * 2**20, "max_member_bytes": 5 * 2**20}


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2]
)
def test_members_read_as_zipfile_reads_them(compression):
    members = {
        "a.jpg": image_bytes(seed=1),
        "sub/b.png": image_bytes(fmt="PNG"),
        "empty.bin": b"",
        "large.bin": bytes(range(256)) * 8000,
        "__MACOSX/._a.jpg": b"junk",
        "sub/.DS_Store": b"junk",
        "sub/": b"",
    }
    archive = _zip(members, compression)
    listed = list(iter_archive(archive, **LIMITS))
    assert [m.name for m in listed] == ["a.jpg", "sub/b.png", "empty.bin", "large.bin"]
    assert all(m.data == members[m.name] and not m.error for m in listed)
    assert list_archive(archive, max_files=100, max_total_bytes=2**30).skipped == 2


def test_data_prepended_to_the_archive_is_allowed_for():
    archive = _zip({"a.jpg": b"hello"})
    shifted = io.BytesIO(b"#!/bin/sh self-extractor stub\n" * 10 + archive.getvalue())
    [member] = iter_archive(shifted, **LIMITS)
    assert member.data == b"hello"


def test_zip64_archives_are_read():
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", allowZip64=True) as archive,
        archive.open("big.bin", "w", force_zip64=True) as member,
    ):
        member.write(b"z" * 1000)
    buffer.seek(0)
    [member] = iter_archive(buffer, **LIMITS)
    assert member.data == b"z" * 1000


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/passwd", "a/../../b.jpg", "C:/win.jpg"])
def test_path_traversal_names_are_refused(name):
    [member] = list(iter_archive(_zip({name: image_bytes()}), **LIMITS))
    assert member.data is None and member.error == ZIP_UNSAFE_NAME


def test_names_are_decoded_as_unzip_does_and_a_bad_one_refuses_its_member_only():
    archive = io.BytesIO(
        zip_with_raw_names(
            [
                (b"plain.jpg", b"1", False),
                (b"bad\xff\xfe.jpg", b"2", True),  # says UTF-8, is not
                ("caf\u00e9.jpg".encode(), b"3", False),  # UTF-8 without the flag
                ("na\u00efve.jpg".encode("cp437"), b"4", False),  # DOS code page
                ("stra\u00dfe.jpg".encode(), b"5", True),  # flagged UTF-8
            ]
        )
    )
    with pytest.raises((zipfile.BadZipFile, UnicodeDecodeError)):
        zipfile.ZipFile(archive)  # the standard module refuses the whole archive
    members = list(iter_archive(archive, **LIMITS))
    assert [(m.name, m.data, m.error) for m in members] == [
        ("plain.jpg", b"1", ""),
        ("bad\ufffd\ufffd.jpg", None, ZIP_BAD_NAME),
        ("caf\u00e9.jpg", b"3", ""),
        ("na\u00efve.jpg", b"4", ""),
        ("stra\u00dfe.jpg", b"5", ""),
    ]


def test_control_characters_and_overlong_names_refuse_their_member():
    archive = _zip({"bell\x07.jpg": b"1", "n" * 300 + ".jpg": b"2", "fine.jpg": b"3"})
    errors = [m.error for m in iter_archive(archive, **LIMITS)]
    assert "control characters" in errors[0] and "longer than 255" in errors[1]
    assert errors[2] == ""


def test_too_many_files_refuses_the_archive():
    at_limit = _zip({f"{i}.jpg": b"x" for i in range(4)})
    listing = list_archive(at_limit, max_files=4, max_total_bytes=2**20)
    assert len(listing.members) == 4
    archive = _zip({f"{i}.jpg": b"x" for i in range(5)})
    with pytest.raises(ArchiveRejected, match="holds 5 files; the limit is 4"):
        list(iter_archive(archive, max_files=4, max_total_bytes=2**20, max_member_bytes=2**20))


def test_uncompressed_size_limit_refuses_the_archive():
    # 5 MB of zeros compresses to a few KB: the limit is on what it unpacks to.
    archive = _zip({"zeros.png": bytes(5 * 2**20)})
    assert len(archive.getvalue()) < 100_000
    with pytest.raises(ArchiveRejected, match="unpacks to 5 MiB; the limit is 1 MiB"):
        list(iter_archive(archive, max_files=10, max_total_bytes=2**20, max_member_bytes=2**30))


def test_a_member_over_the_image_limit_is_refused_without_inflating_it():
    """A 1 MB zip holding a 1 GiB member took a web worker to 2,240 MiB: now it costs nothing."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("huge.jpg", "w", force_zip64=True) as member:
            chunk = bytes(2**20)
            for _ in range(1024):
                member.write(chunk)
        archive.writestr("small.jpg", b"ok")
    assert len(buffer.getvalue()) < 2 * 2**20
    tracemalloc.start()
    members = list(
        iter_archive(buffer, max_files=10, max_total_bytes=2**31, max_member_bytes=20 * 2**20)
    )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(m.name, m.data) for m in members] == [("huge.jpg", None), ("small.jpg", b"ok")]
    assert members[0].error == "The file is 1024.0 MiB; the limit is 20 MiB."
    assert peak < 5 * 2**20


def _patch_declared_size(raw: bytearray, size: int) -> None:
    for signature, at in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        offset = 0
        while (offset := raw.find(signature, offset)) != -1:
            raw[offset + at : offset + at + 4] = size.to_bytes(4, "little")
            offset += 1


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_member_that_lies_about_its_size_is_never_inflated_past_it(compression):
    raw = bytearray(_zip({"a.jpg": bytes(30 * 2**20)}, compression).getvalue())
    _patch_declared_size(raw, 1000)  # claims 1,000 bytes; holds 30 MB
    tracemalloc.start()
    [member] = list(iter_archive(io.BytesIO(bytes(raw)), **LIMITS))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert member.data is None and member.error == ZIP_SIZE_LIED
    budget = 2 * 2**20 if compression == zipfile.ZIP_DEFLATED else 32 * 2**20
    assert peak < budget  # bounded by the declared size + 1 and one read chunk


def test_damaged_data_and_encryption_refuse_the_member():
    raw = bytearray(_zip({"a.bin": b"x" * 5000, "b.bin": b"y"}).getvalue())
    crc_at = raw.find(b"PK\x01\x02") + 16
    raw[crc_at : crc_at + 4] = b"\x00\x00\x00\x00"  # the directory's CRC for a.bin
    encrypted_at = raw.find(b"PK\x01\x02", crc_at) + 8
    raw[encrypted_at] |= 0x1
    first, second = iter_archive(io.BytesIO(bytes(raw)), **LIMITS)
    assert "CRC-32" in first.error and first.data is None
    assert second.error == ZIP_ENCRYPTED


def test_a_truncated_archive_is_unreadable_as_a_whole_and_a_cut_member_alone():
    data = zip_of([("a.jpg", random.randbytes(1000)), ("b.jpg", random.randbytes(1000))])
    with pytest.raises(ArchiveRejected):
        list(iter_archive(io.BytesIO(data[: len(data) // 2]), **LIMITS))
    listing = list_archive(io.BytesIO(data), max_files=10, max_total_bytes=2**20)
    with pytest.raises(MemberRefused):
        read_member(io.BytesIO(data[:60]), listing.members[0], max_bytes=2**20)


@pytest.mark.parametrize("blob", [b"not a zip at all", b"", b"PK\x05\x06" + b"\xff" * 18])
def test_not_a_zip(blob):
    with pytest.raises(ArchiveRejected):
        list(iter_archive(io.BytesIO(blob), **LIMITS))


def test_a_truncated_archive_whose_last_member_is_a_zip_is_refused_not_read_as_that_zip():
    """Cut before its own directory, an archive ending in a stored zip shows only that inner
    zip's directory: reading it would list the inner members and lose every outer one."""
    inner = _zip({"inner_good5.jpg": b"inner"}).getvalue()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("outer_good6.jpg", b"outer", compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("inner.zip", inner, compress_type=zipfile.ZIP_STORED)
    whole = buffer.getvalue()
    cut = whole[: whole.index(inner) + len(inner)]  # the outer directory is gone
    with pytest.raises(ArchiveRejected, match="truncated"):
        list_archive(io.BytesIO(cut), max_files=100, max_total_bytes=2**30)
    assert str(ZIP_TRUNCATED).startswith("The archive is truncated")
    # The whole archive still reads, inner zip and all.
    names = [m.name for m in iter_archive(io.BytesIO(whole), **LIMITS)]
    assert names == ["outer_good6.jpg", "inner.zip"]
