"""A release as one zip, written as it is sent (pure).

The standard library's ``zipfile`` writes to a stream it cannot seek (sizes and CRCs go in data
descriptors after each member), so the archive is produced chunk by chunk from files opened one
at a time: memory stays at one chunk whatever the release's size, and nothing is written to disk.
Members already compressed (Parquet, images, shards) are stored; text is deflated. ZIP64 is on
for every member, so members and archives over 4 GiB work.
"""

import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

CHUNK = 1 << 20
STORED_SUFFIXES = frozenset(
    {".parquet", ".tar", ".zip", ".gz", ".jpg", ".jpeg", ".png", ".webp", ".npy", ".npz"}
)


@dataclass(frozen=True)
class Member:
    """One file of the archive: its path inside it and how to open its bytes (read once)."""

    path: str
    open: Callable[[], BinaryIO]


@dataclass(frozen=True)
class Folder:
    """Files of a release under one top-level folder ("" for the top level), for its page."""

    name: str
    files: list[dict]
    total_bytes: int

    @property
    def count(self) -> int:
        return len(self.files)


class _Sink:
    """A write-only, unseekable file that hands what was written to the generator."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def zip_stream(members: Iterable[Member], *, chunk: int = CHUNK) -> Iterator[bytes]:
    """The bytes of a zip of ``members``, in order, as chunks of about ``chunk`` bytes.

    Errors opening or reading a member propagate (the response is then cut short, which a
    client sees as a broken download, never as a complete but wrong archive).
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", allowZip64=True) as archive:  # type: ignore[arg-type]
        for member in members:
            info = zipfile.ZipInfo(member.path, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = (
                zipfile.ZIP_STORED
                if PurePosixPath(member.path).suffix.lower() in STORED_SUFFIXES
                else zipfile.ZIP_DEFLATED
            )
            info.external_attr = 0o644 << 16
            with member.open() as source, archive.open(info, "w", force_zip64=True) as target:
                while block := source.read(chunk):
                    target.write(block)
                    if out := sink.drain():
                        yield out
            if out := sink.drain():
                yield out
    if out := sink.drain():
        yield out


def files_by_folder(files: Iterable[dict]) -> list[Folder]:
    """Files (dicts with ``path`` and ``size``) grouped by their top-level folder (images sit
    in 256 prefix folders under ``images/``, shards under ``webdataset/``…: one group each),
    the top level first, then folders by name; files keep their order within a group."""
    groups: dict[str, list[dict]] = {}
    for entry in files:
        parts = PurePosixPath(entry["path"]).parts
        groups.setdefault(parts[0] if len(parts) > 1 else "", []).append(entry)
    return [
        Folder(name=name, files=group, total_bytes=sum(int(f.get("size") or 0) for f in group))
        for name, group in sorted(groups.items(), key=lambda item: (item[0] != "", item[0]))
    ]
