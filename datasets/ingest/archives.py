"""Reading zip uploads safely: members are read into memory one at a time, never extracted to disk.

Limits on member count and total uncompressed size are checked against the central directory before
anything is read, and again while reading, since a crafted archive can lie about sizes.
"""

import posixpath
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

ZIP_UNREADABLE = "Not a readable zip archive."
ZIP_TOO_MANY_FILES = "The archive holds {count} files; the limit is {limit}."
ZIP_TOO_LARGE = "The archive unpacks to {size_mb:.0f} MB; the limit is {limit_mb:.0f} MB."
ZIP_UNSAFE_NAME = "Unsafe path inside the archive."
ZIP_ENCRYPTED = "Encrypted archive members are not supported."
ZIP_SIZE_LIED = "The member is larger than the archive declares."

# Operating-system clutter that is not an upload the person meant to make.
_SKIPPED_PREFIXES = ("__MACOSX/",)
_SKIPPED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")


class ArchiveRejected(ValueError):
    """The archive as a whole is refused; nothing from it is imported."""


@dataclass(frozen=True)
class ArchiveMember:
    name: str
    data: bytes | None  # None when the member itself is refused
    error: str = ""


def iter_archive(
    fileobj: BinaryIO, *, max_files: int, max_total_bytes: int
) -> Iterator[ArchiveMember]:
    """Yield each file in a zip archive with its bytes, or with the reason it is refused."""
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveRejected(ZIP_UNREADABLE) from exc
    with archive:
        members = [info for info in archive.infolist() if _is_wanted(info)]
        if len(members) > max_files:
            raise ArchiveRejected(ZIP_TOO_MANY_FILES.format(count=len(members), limit=max_files))
        declared = sum(info.file_size for info in members)
        if declared > max_total_bytes:
            raise ArchiveRejected(
                ZIP_TOO_LARGE.format(size_mb=declared / 2**20, limit_mb=max_total_bytes / 2**20)
            )
        for info in members:
            if not _is_safe_name(info.filename):
                yield ArchiveMember(name=info.filename, data=None, error=ZIP_UNSAFE_NAME)
                continue
            if info.flag_bits & 0x1:
                yield ArchiveMember(name=info.filename, data=None, error=ZIP_ENCRYPTED)
                continue
            try:
                with archive.open(info) as member:
                    data = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                yield ArchiveMember(name=info.filename, data=None, error=f"{ZIP_UNREADABLE} {exc}")
                continue
            if len(data) > info.file_size:
                yield ArchiveMember(name=info.filename, data=None, error=ZIP_SIZE_LIED)
                continue
            yield ArchiveMember(name=info.filename, data=data)


def _is_wanted(info: zipfile.ZipInfo) -> bool:
    if info.is_dir() or info.filename.startswith(_SKIPPED_PREFIXES):
        return False
    return posixpath.basename(info.filename) not in _SKIPPED_NAMES


def _is_safe_name(name: str) -> bool:
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return False
    return ".." not in normalised.split("/")
