"""WebDataset tar shards per split, one sample per image, byte-identical on rebuild.

A sample is ``<key>.<ext>`` (the image bytes, extension from the image path) and
``<key>.json`` (the image's fields and every one of its pairs, plus ``captions``: the texts
of its matching pairs), where the key is the zero-padded image id. Shards are
``webdataset/<split>-<n>.tar`` with ``n`` from 000000, closed at ``max_samples`` samples or
before they would pass ``max_bytes``.

Tars are written with :mod:`tarfile` directly rather than ``webdataset.ShardWriter`` so that
every header is fixed (mtime, uid, gid, names, mode), which makes rebuilds byte-identical, and
so that writing needs no PyTorch import. Rows of one image arrive together (the row order of
:func:`~datasets.releases.exporters.rows.export_rows`), so only one image's rows and bytes are held.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from datasets.releases.exporters.rows import ReleaseRow

SHARDS_DIR = "webdataset"
SHARD_FILE = "{split}-{index:06d}.tar"
MAX_SAMPLES_PER_SHARD = 10_000
# 1 GB is the usual WebDataset shard size: big enough for sequential reads, small enough to
# spread across data-loader workers.
MAX_BYTES_PER_SHARD = 1_000_000_000
# A fixed modification time (the epoch) in every header; a real time would change each build.
TAR_MTIME = 0
KEY_DIGITS = 12
_IMAGE_EXTENSIONS = {"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"}
_DEFAULT_EXTENSION = "jpg"
_BLOCK = tarfile.BLOCKSIZE
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
# Fields of the sample JSON that belong to each pair rather than to the image.
_PAIR_FIELDS = (
    "pair_id",
    "caption_id",
    "caption",
    "kind",
    "label",
    "label_source",
    "confidence",
    "n_judgments",
    "weight",
)

ERROR_SHARD_LIMITS = "max_samples and max_bytes must be positive."
ERROR_IMAGE_BYTES = "read_image must return bytes for image {image_id}, not {type_name}."

ReadImage = Callable[[ReleaseRow], bytes]


class WebDatasetSink:
    """Writes each split's images as WebDataset samples into numbered tar shards.

    ``read_image(row)`` returns an image's bytes; it is called once per image, with the
    image's first row, so storage (local disk, S3) stays the caller's concern.
    """

    def __init__(
        self,
        directory: Path,
        *,
        read_image: ReadImage,
        max_samples: int = MAX_SAMPLES_PER_SHARD,
        max_bytes: int = MAX_BYTES_PER_SHARD,
    ) -> None:
        if max_samples < 1 or max_bytes < 1:
            raise ValueError(ERROR_SHARD_LIMITS)
        self.directory = Path(directory) / SHARDS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self._read_image = read_image
        self._max_samples = max_samples
        self._max_bytes = max_bytes
        self._files: list[Path] = []
        self._rows: list[ReleaseRow] = []
        self._split: str | None = None
        self._index = 0
        self._tar: tarfile.TarFile | None = None
        self._samples = 0
        self._bytes = 0

    def write(self, row: ReleaseRow) -> None:
        rows = self._rows
        if rows and (row["image_id"] != rows[0]["image_id"] or row["split"] != rows[0]["split"]):
            self._flush_sample()
        self._rows.append(row)

    def close(self) -> list[Path]:
        self._flush_sample()
        self._close_shard()
        return list(self._files)

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        for path in self._files:
            path.unlink(missing_ok=True)

    def _flush_sample(self) -> None:
        rows = self._rows
        if not rows:
            return
        first = rows[0]
        image = self._read_image(first)
        if not isinstance(image, bytes | bytearray | memoryview):
            raise TypeError(
                ERROR_IMAGE_BYTES.format(image_id=first["image_id"], type_name=type(image).__name__)
            )
        key = f"{first['image_id']:0{KEY_DIGITS}d}"
        members = [
            (f"{key}.{_extension(first['image_path'])}", bytes(image)),
            (f"{key}.json", _sample_json(rows)),
        ]
        size = sum(_BLOCK + _padded(len(data)) for _name, data in members)
        if first["split"] != self._split:
            self._close_shard()
            self._split, self._index = first["split"], 0
        elif self._tar is not None and (
            self._samples >= self._max_samples or self._bytes + size > self._max_bytes
        ):
            self._close_shard()
            self._index += 1
        if self._tar is None:
            self._open_shard()
        tar = self._tar
        assert tar is not None
        for name, data in members:
            tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
        self._samples += 1
        self._bytes += size
        self._rows = []

    def _open_shard(self) -> None:
        path = self.directory / SHARD_FILE.format(split=self._split, index=self._index)
        self._files.append(path)
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self._samples = self._bytes = 0

    def _close_shard(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None


def _sample_json(rows: list[ReleaseRow]) -> bytes:
    first = rows[0]
    sample = {
        "image_id": first["image_id"],
        "image_path": first["image_path"],
        "image_sha256": first["image_sha256"],
        "width": first["width"],
        "height": first["height"],
        "split": first["split"],
        "cluster_id": first["cluster_id"],
        "license": first["license"],
        "license_url": first["license_url"],
        "source_url": first["source_url"],
        "original_name": first["original_name"],
        "captions": [row["caption"] for row in rows if row["label"] == 1],
        "pairs": [{name: row[name] for name in _PAIR_FIELDS} for row in rows],
    }
    return _JSON.encode(sample).encode("utf-8")


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = TAR_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _extension(image_path: str) -> str:
    # Image paths may be URLs: drop a query string before taking the suffix.
    suffix = PurePosixPath(image_path.split("?", 1)[0]).suffix.lower().lstrip(".")
    return suffix if suffix in _IMAGE_EXTENSIONS else _DEFAULT_EXTENSION


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK
