"""The pairs table as JSONL, CSV and Parquet: one row per pair, written as rows stream past.

Each writer holds at most one Parquet row group in memory and is byte-identical on rebuild:
JSONL has sorted keys, compact separators and Python's shortest round-trip float spelling;
CSV has a fixed column order and ``\\n`` line ends, and text cells that a spreadsheet would
run as a formula are neutralised (:func:`spreadsheet_safe`); Parquet has an explicit schema, fixed
row groups and no timestamps (pyarrow writes only its own version as ``created_by``).
"""

from __future__ import annotations

import csv
import json
import operator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datasets.releases.exporters.rows import PAIR_COLUMNS, ReleaseRow

PAIRS_JSONL = "pairs.jsonl"
PAIRS_CSV = "pairs.csv"
PAIRS_PARQUET = "pairs.parquet"

# 100,000 rows of captions and paths is a few MiB per column batch: large enough for good
# compression and fast scans, small enough to keep the writer's memory flat.
ROW_GROUP_SIZE = 100_000
_BUFFER_BYTES = 1 << 20

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.int64(), nullable=False),
        pa.field("image_id", pa.int64(), nullable=False),
        pa.field("caption_id", pa.int64(), nullable=False),
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("image_sha256", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("label_source", pa.string(), nullable=False),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("n_judgments", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("cluster_id", pa.int64(), nullable=False),
        pa.field("weight", pa.float64(), nullable=False),
        pa.field("license", pa.string(), nullable=False),
    ]
)
# Columns with few distinct values, or repeated for every pair of an image, compress best as
# dictionaries; captions and ids are nearly unique, so a dictionary would only cost time.
_DICTIONARY_COLUMNS = ["image_path", "image_sha256", "kind", "label_source", "split", "license"]
_pair_values = operator.itemgetter(*PAIR_COLUMNS)
# json's own string escaper: what json.dumps(..., ensure_ascii=False) applies to each string.
_quote = json.encoder.encode_basestring

ERROR_ROW_GROUP_SIZE = "row_group_size must be a positive number of rows."
# OWASP's CSV injection rule: a cell starting with one of these is read as a formula (or, for
# tab and carriage return, can smuggle one) by Excel, LibreOffice and Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a text value starting with one of
    :data:`FORMULA_STARTS` gets a leading apostrophe (OWASP); numbers and other text unchanged.
    Only ``pairs.csv`` uses it: JSONL and Parquet keep the raw text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _FileSink:
    """One output file behind ``self._handle`` (anything with ``close()``), removed by abort."""

    _handle: Any

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def close(self) -> list[Path]:
        self._finish()
        self._handle.close()
        return [self.path]

    def abort(self) -> None:
        self._handle.close()
        self.path.unlink(missing_ok=True)

    def _finish(self) -> None:
        """Write whatever is still buffered; nothing for line-oriented formats."""


class JsonlSink(_FileSink):
    """``pairs.jsonl``: one JSON object per line, keys sorted, UTF-8."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle = open(  # noqa: SIM115 — closed by close() or abort()
            self.path, "w", encoding="utf-8", newline="\n", buffering=_BUFFER_BYTES
        )

    def write(self, row: ReleaseRow) -> None:
        # The same bytes as json.dumps(row, sort_keys=True, ensure_ascii=False,
        # separators=(",", ":")) — a test holds it to that — at a third of the cost: rows are
        # normalised, so ints, finite floats and strings are all that can appear.
        self._handle.write(
            f'{{"caption":{_quote(row["caption"])},"caption_id":{row["caption_id"]!r},'
            f'"cluster_id":{row["cluster_id"]!r},"confidence":{row["confidence"]!r},'
            f'"image_id":{row["image_id"]!r},"image_path":{_quote(row["image_path"])},'
            f'"image_sha256":{_quote(row["image_sha256"])},"kind":{_quote(row["kind"])},'
            f'"label":{row["label"]!r},"label_source":{_quote(row["label_source"])},'
            f'"license":{_quote(row["license"])},"n_judgments":{row["n_judgments"]!r},'
            f'"pair_id":{row["pair_id"]!r},"split":{_quote(row["split"])},'
            f'"weight":{row["weight"]!r}}}\n'
        )


class CsvSink(_FileSink):
    """``pairs.csv``: a header, then the pair columns in :data:`PAIR_COLUMNS` order, UTF-8, each
    text cell through :func:`spreadsheet_safe` (a caption or licence may start with ``=``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._handle = open(  # noqa: SIM115 — closed by close() or abort()
            self.path, "w", encoding="utf-8", newline="", buffering=_BUFFER_BYTES
        )
        # Every text cell quoted: with "\n" line ends the csv module would leave a lone "\r"
        # in a cell unquoted, and readers would split the row there.
        self._writer = csv.writer(self._handle, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        self._writer.writerow(PAIR_COLUMNS)

    def write(self, row: ReleaseRow) -> None:
        self._writer.writerow([spreadsheet_safe(value) for value in _pair_values(row)])


class ParquetSink(_FileSink):
    """``pairs.parquet``: :data:`PARQUET_SCHEMA`, zstd, one row group per ``row_group_size`` rows."""

    def __init__(self, path: Path, *, row_group_size: int = ROW_GROUP_SIZE) -> None:
        if row_group_size < 1:
            raise ValueError(ERROR_ROW_GROUP_SIZE)
        super().__init__(path)
        self._row_group_size = row_group_size
        self._rows: list[tuple[object, ...]] = []
        self._handle = pq.ParquetWriter(
            self.path,
            PARQUET_SCHEMA,
            compression="zstd",
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=True,
        )

    def write(self, row: ReleaseRow) -> None:
        # A tuple per row, transposed into columns per row group: cheaper than 15 appends.
        self._rows.append(_pair_values(row))
        if len(self._rows) >= self._row_group_size:
            self._flush()

    def _finish(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        columns = zip(*self._rows, strict=True)
        arrays = [
            pa.array(values, type=field.type)
            for field, values in zip(PARQUET_SCHEMA, columns, strict=True)
        ]
        self._rows = []
        table = pa.Table.from_arrays(arrays, schema=PARQUET_SCHEMA)
        self._handle.write_table(table, row_group_size=self._row_group_size)
