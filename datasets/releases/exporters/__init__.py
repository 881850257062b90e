"""Streaming writers for every release format, without the ORM.

The release service streams rows (:class:`~datasets.releases.exporters.rows.ReleaseRow`, one per pair)
``ORDER BY split, image_id, pair_id`` and calls :func:`export_rows` once with the sinks of the
formats it wants (:func:`release_sinks`); every writer sees each row once, so one pass over the
database writes every file. Then it writes the datasheet and the diff, and
:func:`write_manifest` last. A release directory looks like::

    pairs.jsonl  pairs.csv  pairs.parquet
    coco/captions_<split>.json
    webdataset/<split>-000000.tar ...
    images/ab/<sha256>.jpg ...        (when images are copied, never beside shards; the caller's job)
    DATASHEET.md  diff.jsonl  manifest.json

Every file is byte-identical when rebuilt from the same rows. Writers hold at most one Parquet
row group, one image's rows and one image's bytes; memory stays flat as releases grow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from datasets.releases.exporters.coco import COCO_DIR, COCO_FILE, CocoSink
from datasets.releases.exporters.manifest import (
    MANIFEST,
    ManifestEntry,
    file_sha256,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from datasets.releases.exporters.rows import (
    IMAGE_COLUMNS,
    IMAGES_DIR,
    KINDS,
    LABEL_SOURCES,
    PAIR_COLUMNS,
    ExportResult,
    ReleaseRow,
    RowSink,
    export_rows,
    normalise_row,
    release_image_path,
)
from datasets.releases.exporters.shards import (
    MAX_BYTES_PER_SHARD,
    MAX_SAMPLES_PER_SHARD,
    SHARD_FILE,
    SHARDS_DIR,
    ReadImage,
    WebDatasetSink,
)
from datasets.releases.exporters.tables import (
    PAIRS_CSV,
    PAIRS_JSONL,
    PAIRS_PARQUET,
    PARQUET_SCHEMA,
    ROW_GROUP_SIZE,
    CsvSink,
    JsonlSink,
    ParquetSink,
)

FORMATS = ("jsonl", "csv", "parquet", "coco", "webdataset")

ERROR_UNKNOWN_FORMAT = "Unknown release format {name!r}; expected one of {formats}."
ERROR_READ_IMAGE_REQUIRED = "The webdataset format needs read_image."

__all__ = [
    "COCO_DIR",
    "COCO_FILE",
    "FORMATS",
    "IMAGES_DIR",
    "IMAGE_COLUMNS",
    "KINDS",
    "LABEL_SOURCES",
    "MANIFEST",
    "MAX_BYTES_PER_SHARD",
    "MAX_SAMPLES_PER_SHARD",
    "PAIRS_CSV",
    "PAIRS_JSONL",
    "PAIRS_PARQUET",
    "PAIR_COLUMNS",
    "PARQUET_SCHEMA",
    "ROW_GROUP_SIZE",
    "SHARDS_DIR",
    "SHARD_FILE",
    "CocoSink",
    "CsvSink",
    "ExportResult",
    "JsonlSink",
    "ManifestEntry",
    "ParquetSink",
    "ReadImage",
    "ReleaseRow",
    "RowSink",
    "WebDatasetSink",
    "export_rows",
    "file_sha256",
    "normalise_row",
    "read_manifest",
    "release_image_path",
    "release_sinks",
    "verify_manifest",
    "write_coco",
    "write_csv",
    "write_jsonl",
    "write_manifest",
    "write_parquet",
    "write_webdataset",
]


def release_sinks(
    *,
    directory: Path,
    formats: Sequence[str] = FORMATS,
    read_image: ReadImage | None = None,
    coco_info: Mapping[str, object] | None = None,
    row_group_size: int = ROW_GROUP_SIZE,
    max_samples: int = MAX_SAMPLES_PER_SHARD,
    max_bytes: int = MAX_BYTES_PER_SHARD,
) -> list[RowSink]:
    """The sinks that write ``formats`` into ``directory``, ready for :func:`export_rows`."""
    directory = Path(directory)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ValueError(ERROR_UNKNOWN_FORMAT.format(name=unknown[0], formats=", ".join(FORMATS)))
    if "webdataset" in formats and read_image is None:
        raise ValueError(ERROR_READ_IMAGE_REQUIRED)
    sinks: list[RowSink] = []
    for name in formats:
        if name == "jsonl":
            sinks.append(JsonlSink(directory / PAIRS_JSONL))
        elif name == "csv":
            sinks.append(CsvSink(directory / PAIRS_CSV))
        elif name == "parquet":
            sinks.append(ParquetSink(directory / PAIRS_PARQUET, row_group_size=row_group_size))
        elif name == "coco":
            sinks.append(CocoSink(directory, info=coco_info))
        elif name == "webdataset":
            assert read_image is not None
            sinks.append(
                WebDatasetSink(
                    directory, read_image=read_image, max_samples=max_samples, max_bytes=max_bytes
                )
            )
    return sinks


def write_jsonl(*, path: Path, rows: Iterable[Mapping[str, object]]) -> ExportResult:
    """Write the pairs table to one JSONL file."""
    return export_rows(rows=rows, sinks=[JsonlSink(Path(path))])


def write_csv(*, path: Path, rows: Iterable[Mapping[str, object]]) -> ExportResult:
    """Write the pairs table to one CSV file."""
    return export_rows(rows=rows, sinks=[CsvSink(Path(path))])


def write_parquet(
    *, path: Path, rows: Iterable[Mapping[str, object]], row_group_size: int = ROW_GROUP_SIZE
) -> ExportResult:
    """Write the pairs table to one Parquet file."""
    return export_rows(rows=rows, sinks=[ParquetSink(Path(path), row_group_size=row_group_size)])


def write_coco(
    *,
    directory: Path,
    rows: Iterable[Mapping[str, object]],
    info: Mapping[str, object] | None = None,
) -> ExportResult:
    """Write ``coco/captions_<split>.json`` under ``directory`` for every split with rows."""
    return export_rows(rows=rows, sinks=[CocoSink(Path(directory), info=info)])


def write_webdataset(
    *,
    directory: Path,
    rows: Iterable[Mapping[str, object]],
    read_image: ReadImage,
    max_samples: int = MAX_SAMPLES_PER_SHARD,
    max_bytes: int = MAX_BYTES_PER_SHARD,
) -> ExportResult:
    """Write ``webdataset/<split>-NNNNNN.tar`` shards under ``directory``."""
    sink = WebDatasetSink(
        Path(directory), read_image=read_image, max_samples=max_samples, max_bytes=max_bytes
    )
    return export_rows(rows=rows, sinks=[sink])
