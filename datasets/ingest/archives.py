"""Reading zip uploads safely: one member at a time, never extracted to disk, never inflated past
the per-image limit.

The central directory is read here rather than by :mod:`zipfile`, for two reasons the standard
module cannot meet: one member whose name claims UTF-8 but is not makes ``zipfile.ZipFile`` refuse
the whole archive, and names written without the UTF-8 flag are always decoded as cp437, which
garbles the UTF-8 names most tools write. Names are decoded as Info-ZIP's ``unzip`` does on a
UTF-8 system: the Unicode Path extra field when present and matching, UTF-8 when flagged, the raw
bytes as UTF-8 when they are valid UTF-8, cp437 otherwise. A bad name refuses its member only.

Members are decompressed with :mod:`zlib` / :mod:`bz2` in bounded steps, so a member is never
inflated past ``max_bytes + 1`` bytes in memory, whatever its header claims; its CRC-32 and size
are checked against the directory. Limits on member count and total declared size refuse the
archive before any member is read.
"""

import bz2
import posixpath
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

ZIP_UNREADABLE = "Not a readable zip archive."
ZIP_TRUNCATED = (
    "The archive is truncated: the only directory found is that of a zip stored inside it, so "
    "its other members cannot be listed."
)
ZIP_TOO_MANY_FILES = "The archive holds {count} files; the limit is {limit}."
ZIP_TOO_LARGE = "The archive unpacks to {size_mb:.0f} MiB; the limit is {limit_mb:.3g} MiB."
ZIP_UNSAFE_NAME = "Unsafe path inside the archive."
ZIP_BAD_NAME = "The member's name is not valid UTF-8 although the archive says it is."
ZIP_CONTROL_NAME = "The member's name holds control characters."
ZIP_LONG_NAME = "The member's name is longer than {limit} characters."
ZIP_ENCRYPTED = "Encrypted archive members are not supported."
ZIP_METHOD = "Compression method {method} is not supported (use deflate or store)."
ZIP_MEMBER_TOO_LARGE = "The file is {size_mb:.1f} MiB; the limit is {limit_mb:.3g} MiB."
ZIP_SIZE_LIED = "The member is larger than the archive declares."
ZIP_DAMAGED = "The member's data is damaged ({detail})."

# Operating-system clutter that is not an upload the person meant to make.
_SKIPPED_PREFIXES = ("__MACOSX/",)
_SKIPPED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")
NAME_MAX_CHARS = 255  # Image.original_name

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_MAX_COMMENT = 0xFFFF
# A directory of 10,000 entries with long names is a few MB; more is a crafted archive.
_MAX_DIRECTORY_BYTES = 64 * 2**20
_CHUNK = 256 * 1024
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_STORED, _DEFLATED, _BZIP2 = 0, 8, 12


class ArchiveRejected(ValueError):
    """The archive as a whole is refused; nothing from it is imported."""


class MemberRefused(ValueError):
    """One member is refused, with the reason shown to the uploader; the others go on."""


@dataclass(frozen=True)
class ZipEntry:
    """One file in the central directory. ``name_error`` is set when the name itself is refused."""

    name: str
    flag_bits: int
    method: int
    crc: int
    compressed_size: int
    file_size: int
    header_offset: int  # already adjusted for data prepended to the archive
    name_error: str = ""


@dataclass(frozen=True)
class ArchiveListing:
    members: list[ZipEntry]  # the files to report on, in directory order
    skipped: int  # operating-system clutter (__MACOSX, .DS_Store…), not counted as rows


@dataclass(frozen=True)
class ArchiveMember:
    name: str
    data: bytes | None  # None when the member itself is refused
    error: str = ""


def list_archive(fileobj: BinaryIO, *, max_files: int, max_total_bytes: int) -> ArchiveListing:
    """Read the central directory: the files in it (directories left out), in directory order.

    Raises ArchiveRejected when the file is no zip, when it holds more than ``max_files`` files,
    or when their declared sizes add up to more than ``max_total_bytes``.
    """
    try:
        entries = _central_directory(fileobj, max_files=max_files)
    except (struct.error, OSError, ValueError, OverflowError) as exc:
        if isinstance(exc, ArchiveRejected):
            raise
        raise ArchiveRejected(ZIP_UNREADABLE) from exc
    members, skipped = [], 0
    for entry in entries:
        if entry.name.endswith("/") and not entry.name_error:
            continue  # a folder
        if _is_clutter(entry.name):
            skipped += 1
            continue
        members.append(entry)
    if len(members) > max_files:
        raise ArchiveRejected(ZIP_TOO_MANY_FILES.format(count=len(members), limit=max_files))
    declared = sum(entry.file_size for entry in members)
    if declared > max_total_bytes:
        raise ArchiveRejected(
            ZIP_TOO_LARGE.format(size_mb=declared / 2**20, limit_mb=max_total_bytes / 2**20)
        )
    return ArchiveListing(members=members, skipped=skipped)


def read_member(fileobj: BinaryIO, entry: ZipEntry, *, max_bytes: int) -> bytes:
    """The member's bytes, inflated one bounded step at a time and checked (size, CRC-32).

    Raises MemberRefused for a refused name, encryption, an unsupported method, a declared or
    actual size over ``max_bytes``, or damaged data. At most ``max_bytes + 1`` bytes are ever
    held in memory for the member.
    """
    if entry.name_error:
        raise MemberRefused(entry.name_error)
    if entry.flag_bits & _FLAG_ENCRYPTED:
        raise MemberRefused(ZIP_ENCRYPTED)
    if entry.file_size > max_bytes:
        raise MemberRefused(_too_large(entry.file_size, max_bytes))
    if entry.method not in (_STORED, _DEFLATED, _BZIP2):
        raise MemberRefused(ZIP_METHOD.format(method=entry.method))
    try:
        fileobj.seek(entry.header_offset)
        header = _LOCAL.unpack(_read_exactly(fileobj, _LOCAL.size))
        if header[0] != b"PK\x03\x04":
            raise MemberRefused(ZIP_DAMAGED.format(detail="no local header"))
        fileobj.seek(entry.header_offset + _LOCAL.size + header[10] + header[11])
        # Never more than the declared size + 1 byte: one byte over proves the header lied.
        data = _inflate(fileobj, entry, limit=entry.file_size + 1)
    except (OSError, zlib.error, EOFError, struct.error, ValueError) as exc:
        if isinstance(exc, MemberRefused):
            raise
        raise MemberRefused(ZIP_DAMAGED.format(detail=str(exc) or type(exc).__name__)) from exc
    if len(data) > entry.file_size:
        raise MemberRefused(ZIP_SIZE_LIED)
    if len(data) < entry.file_size:
        raise MemberRefused(ZIP_DAMAGED.format(detail="shorter than declared"))
    if zlib.crc32(data) != entry.crc:
        raise MemberRefused(ZIP_DAMAGED.format(detail="CRC-32 mismatch"))
    return bytes(data)


def iter_archive(
    fileobj: BinaryIO, *, max_files: int, max_total_bytes: int, max_member_bytes: int
) -> Iterator[ArchiveMember]:
    """Yield each file of a zip archive with its bytes, or with the reason it is refused.

    Raises ArchiveRejected (before yielding anything) when the archive as a whole is refused.
    """
    listing = list_archive(fileobj, max_files=max_files, max_total_bytes=max_total_bytes)
    for entry in listing.members:
        try:
            data = read_member(fileobj, entry, max_bytes=max_member_bytes)
        except MemberRefused as exc:
            yield ArchiveMember(name=entry.name, data=None, error=str(exc))
            continue
        yield ArchiveMember(name=entry.name, data=data)


def decode_member_name(raw: bytes, *, flag_bits: int, unicode_path: bytes | None = None) -> str:
    """A member name as ``unzip`` shows it on a UTF-8 system (see the module docstring).

    Raises UnicodeDecodeError when the UTF-8 flag is set but the bytes are not UTF-8.
    """
    if unicode_path is not None and len(unicode_path) > 5 and unicode_path[0] == 1:
        (crc,) = struct.unpack("<L", unicode_path[1:5])
        if crc == zlib.crc32(raw):
            try:
                return unicode_path[5:].decode("utf-8")
            except UnicodeDecodeError:
                pass
    if flag_bits & _FLAG_UTF8:
        return raw.decode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


def _central_directory(fileobj: BinaryIO, *, max_files: int) -> list[ZipEntry]:
    fileobj.seek(0, 2)
    size = fileobj.tell()
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    fileobj.seek(tail_start)
    tail = fileobj.read(size - tail_start)
    eocd_at = _find_eocd(tail)
    if eocd_at < 0:
        raise ArchiveRejected(ZIP_UNREADABLE)
    _sig, _disk, _cd_disk, _count_disk, count, cd_size, cd_offset, _comment = _EOCD.unpack_from(
        tail, eocd_at
    )
    directory_end = tail_start + eocd_at  # where the directory really ends in this file
    if 0xFFFF in (count,) or 0xFFFFFFFF in (cd_size, cd_offset):
        locator_at = eocd_at - _EOCD64_LOCATOR.size
        if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
            # The record sits just before its locator (its own offset ignores prepended data).
            directory_end = tail_start + locator_at - _EOCD64.size
            fileobj.seek(directory_end)
            record = _EOCD64.unpack(_read_exactly(fileobj, _EOCD64.size))
            if record[0] != b"PK\x06\x06":
                raise ArchiveRejected(ZIP_UNREADABLE)
            count, cd_size, cd_offset = record[7], record[8], record[9]
    if count > max_files * 2 + 1000:  # folders and clutter are entries too; files counted later
        raise ArchiveRejected(ZIP_TOO_MANY_FILES.format(count=count, limit=max_files))
    if cd_size > _MAX_DIRECTORY_BYTES or cd_size > directory_end:
        raise ArchiveRejected(ZIP_UNREADABLE)
    # Data prepended to the archive (a self-extractor stub) shifts every offset by this much.
    shift = directory_end - cd_size - cd_offset
    if shift < 0:
        raise ArchiveRejected(ZIP_UNREADABLE)
    if shift:
        # A stub before an archive is a program or script, never a zip member: "prepended data"
        # that starts like one is the outer archive, cut off, around an inner zip's directory.
        fileobj.seek(0)
        if fileobj.read(4) == b"PK\x03\x04":
            raise ArchiveRejected(ZIP_TRUNCATED)
    fileobj.seek(cd_offset + shift)
    directory = _read_exactly(fileobj, cd_size)
    entries, at = [], 0
    while at < len(directory):
        fields = _CENTRAL.unpack_from(directory, at)
        if fields[0] != b"PK\x01\x02":
            raise ArchiveRejected(ZIP_UNREADABLE)
        name_len, extra_len, comment_len = fields[12], fields[13], fields[14]
        raw_name = directory[at + _CENTRAL.size : at + _CENTRAL.size + name_len]
        extra = directory[at + _CENTRAL.size + name_len : at + _CENTRAL.size + name_len + extra_len]
        at += _CENTRAL.size + name_len + extra_len + comment_len
        entries.append(_entry(fields, raw_name, extra, shift))
        if len(entries) > max_files * 2 + 1000:
            raise ArchiveRejected(ZIP_TOO_MANY_FILES.format(count=len(entries), limit=max_files))
    return entries


def _find_eocd(tail: bytes) -> int:
    at = len(tail)
    while (at := tail.rfind(b"PK\x05\x06", 0, at)) >= 0:
        if at + _EOCD.size <= len(tail):
            (comment_len,) = struct.unpack_from("<H", tail, at + 20)
            if at + _EOCD.size + comment_len <= len(tail):
                return at
    return -1


def _entry(fields: tuple, raw_name: bytes, extra: bytes, shift: int) -> ZipEntry:
    flag_bits, method = fields[5], fields[6]
    crc, compressed_size, file_size, header_offset = fields[9], fields[10], fields[11], fields[18]
    unicode_path = None
    for tag, data in _extra_fields(extra):
        if tag == 0x0001:  # Zip64: the 64-bit values of the fields that overflowed, in order
            values = list(struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8]))
            if file_size == 0xFFFFFFFF and values:
                file_size = values.pop(0)
            if compressed_size == 0xFFFFFFFF and values:
                compressed_size = values.pop(0)
            if header_offset == 0xFFFFFFFF and values:
                header_offset = values.pop(0)
        elif tag == 0x7075:
            unicode_path = data
    name_error = ""
    try:
        name = decode_member_name(raw_name, flag_bits=flag_bits, unicode_path=unicode_path)
    except UnicodeDecodeError:
        name, name_error = raw_name.decode("utf-8", "replace"), ZIP_BAD_NAME
    if not name_error:
        name_error = _name_problem(name)
    return ZipEntry(
        name=name,
        flag_bits=flag_bits,
        method=method,
        crc=crc,
        compressed_size=compressed_size,
        file_size=file_size,
        header_offset=header_offset + shift,
        name_error=name_error,
    )


def _extra_fields(extra: bytes) -> Iterator[tuple[int, bytes]]:
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        yield tag, extra[at + 4 : at + 4 + length]
        at += 4 + length


def _name_problem(name: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return ZIP_CONTROL_NAME
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return ZIP_UNSAFE_NAME
    if ".." in normalised.split("/"):
        return ZIP_UNSAFE_NAME
    if len(name) > NAME_MAX_CHARS:
        return ZIP_LONG_NAME.format(limit=NAME_MAX_CHARS)
    return ""


def _is_clutter(name: str) -> bool:
    base = posixpath.basename(name)
    return name.startswith(_SKIPPED_PREFIXES) or base in _SKIPPED_NAMES or base.startswith("._")


def _inflate(fileobj: BinaryIO, entry: ZipEntry, *, limit: int) -> bytearray:
    out = bytearray()
    remaining = entry.compressed_size
    if entry.method == _STORED:
        while remaining and len(out) < limit:
            chunk = fileobj.read(min(_CHUNK, remaining, limit - len(out)))
            if not chunk:
                raise EOFError("archive ends inside the member")
            out += chunk
            remaining -= len(chunk)
        return out
    if entry.method == _DEFLATED:
        inflater = zlib.decompressobj(-15)
        pending = b""
        while len(out) < limit:
            if not pending:
                if not remaining:
                    out += inflater.flush()[: limit - len(out)]
                    break
                pending = fileobj.read(min(_CHUNK, remaining))
                if not pending:
                    raise EOFError("archive ends inside the member")
                remaining -= len(pending)
            out += inflater.decompress(pending, limit - len(out))
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        return out
    inflater = bz2.BZ2Decompressor()
    while len(out) < limit and not inflater.eof:
        if inflater.needs_input:
            if not remaining:
                break
            chunk = fileobj.read(min(_CHUNK, remaining))
            if not chunk:
                raise EOFError("archive ends inside the member")
            remaining -= len(chunk)
        else:
            chunk = b""
        out += inflater.decompress(chunk, max_length=limit - len(out))
    return out


def _read_exactly(fileobj: BinaryIO, size: int) -> bytes:
    data = fileobj.read(size)
    if len(data) != size:
        raise ArchiveRejected(ZIP_UNREADABLE)
    return data


def _too_large(size: int, limit: int) -> str:
    return ZIP_MEMBER_TOO_LARGE.format(size_mb=size / 2**20, limit_mb=limit / 2**20)
