"""``manifest.json``: the path, size and SHA-256 of every file of a release.

Written last, over the finished directory, reading each file in 1 MiB blocks; entries are
sorted by path and the JSON has sorted keys, so a rebuild gives the same bytes.
:func:`verify_manifest` is what a consumer (or a test) runs after downloading.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_BLOCK = 1 << 20

ERROR_MISSING = "{path}: listed in the manifest but missing"
ERROR_SIZE = "{path}: size {actual} differs from the manifest's {expected}"
ERROR_SHA256 = "{path}: SHA-256 differs from the manifest's"
ERROR_UNLISTED = "{path}: present but not in the manifest"


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a release, its path relative to the release directory with ``/``."""

    path: str
    size: int
    sha256: str


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def release_files(directory: Path) -> list[str]:
    """Every file under ``directory`` except the manifest, as sorted ``/``-separated paths."""
    root = Path(directory)
    paths = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            relative = (Path(folder) / name).relative_to(root).as_posix()
            if relative != MANIFEST:
                paths.append(relative)
    paths.sort()
    return paths


def iter_entries(directory: Path) -> Iterator[ManifestEntry]:
    """The manifest entry of every release file, in path order, hashing one file at a time."""
    root = Path(directory)
    for relative in release_files(root):
        yield _entry(root, relative)


def write_manifest(*, directory: Path, release: Mapping[str, object] | None = None) -> Path:
    """Write ``manifest.json`` for every other file in ``directory``; returns its path.

    ``release`` (project, version, previous version...) is stored as is under ``release``;
    keep it free of wall-clock times unless they are part of the snapshot.
    """
    root = Path(directory)
    paths = release_files(root)
    path = root / MANIFEST
    temporary = root / f".{MANIFEST}.partial"
    # Entries are written as they are hashed, so a release of many images never holds them all.
    with open(temporary, "w", encoding="utf-8", newline="\n") as out:
        out.write('{\n  "files": [')
        for index, relative in enumerate(paths):
            entry = _entry(root, relative)
            out.write(",\n    " if index else "\n    ")
            out.write(
                json.dumps(
                    {"path": entry.path, "sha256": entry.sha256, "size": entry.size},
                    ensure_ascii=False,
                    sort_keys=True,
                )
            )
        out.write("\n  ],\n")
        out.write(f'  "format": {MANIFEST_FORMAT},\n')
        out.write('  "release": ')
        out.write(json.dumps(dict(release or {}), ensure_ascii=False, sort_keys=True))
        out.write("\n}\n")
    temporary.replace(path)
    return path


def read_manifest(*, directory: Path) -> list[ManifestEntry]:
    """The entries of a release's ``manifest.json``."""
    with open(Path(directory) / MANIFEST, encoding="utf-8") as fh:
        data = json.load(fh)
    return [
        ManifestEntry(path=f["path"], size=f["size"], sha256=f["sha256"]) for f in data["files"]
    ]


def _entry(root: Path, relative: str) -> ManifestEntry:
    path = root / relative
    return ManifestEntry(path=relative, size=path.stat().st_size, sha256=file_sha256(path))


def verify_manifest(*, directory: Path) -> list[str]:
    """Problems found checking ``directory`` against its manifest; an empty list means intact."""
    root = Path(directory)
    problems = []
    listed = read_manifest(directory=root)
    for entry in listed:
        path = root / entry.path
        if not path.is_file():
            problems.append(ERROR_MISSING.format(path=entry.path))
            continue
        size = path.stat().st_size
        if size != entry.size:
            problems.append(ERROR_SIZE.format(path=entry.path, actual=size, expected=entry.size))
        elif file_sha256(path) != entry.sha256:
            problems.append(ERROR_SHA256.format(path=entry.path))
    known = {entry.path for entry in listed}
    problems.extend(ERROR_UNLISTED.format(path=p) for p in release_files(root) if p not in known)
    return problems
