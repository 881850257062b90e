"""The release row contract, its normalisation, and the one pass that feeds every writer.

The release service streams one row per pair from chunked queries; :func:`export_rows`
normalises each row once (types, enumerations, float rounding), checks the order the grouping
writers rely on, and hands it to every sink. One pass over the database serves all formats.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict, cast

from datasets.releases.splits import SPLITS

KINDS = ("positive", "random_negative", "hard_negative", "text_edit_negative")
LABEL_SOURCES = ("crowd", "gold", "adjudicated", "import", "construction")
LABELS = (0, 1)

# The pairs table (JSONL, CSV, Parquet), in column order. The per-image fields after it only
# feed COCO and WebDataset.
PAIR_COLUMNS = (
    "pair_id",
    "image_id",
    "caption_id",
    "image_path",
    "image_sha256",
    "caption",
    "kind",
    "label",
    "label_source",
    "confidence",
    "n_judgments",
    "split",
    "cluster_id",
    "weight",
    "license",
)
IMAGE_COLUMNS = ("width", "height", "license_url", "source_url", "original_name")
# Copied images live under images/<first two hex digits>/<sha256>.<ext>: content-addressed, so
# a rebuild and the next release name the same image the same way, and no folder grows huge.
IMAGES_DIR = "images"
# Floats are rounded once, here, so that every format carries the same value and a float that
# wobbles in its last bits upstream (aggregation, balancing) cannot change the bytes written.
FLOAT_DIGITS = 6

_FLOAT_COLUMNS = ("confidence", "weight")
_KINDS = frozenset(KINDS)
_LABEL_SOURCES = frozenset(LABEL_SOURCES)
_SPLITS = frozenset(SPLITS)
_INFINITIES = (float("inf"), float("-inf"))

ERROR_IMAGE_SHA256 = "Not a SHA-256 hex digest: {sha256!r}."
ERROR_MISSING_FIELD = "Pair {pair_id}: missing field {field!r}."
ERROR_UNKNOWN_KIND = "Pair {pair_id}: unknown kind {value!r}."
ERROR_UNKNOWN_LABEL_SOURCE = "Pair {pair_id}: unknown label_source {value!r}."
ERROR_UNKNOWN_SPLIT = "Pair {pair_id}: unknown split {value!r}."
ERROR_LABEL = "Pair {pair_id}: label must be 0 or 1, not {value!r}."
ERROR_NOT_FINITE = "Pair {pair_id}: {field} must be a finite number, not {value!r}."
ERROR_SPLIT_ORDER = "Rows must be grouped by split: {split!r} appears again after other splits."
ERROR_IMAGE_ORDER = (
    "Rows must be ordered by image_id within a split: image {image_id} after {previous}."
)
ERROR_PAIR_ORDER = (
    "Rows must be ordered by pair_id within an image: pair {pair_id} after {previous}."
)


class ReleaseRow(TypedDict):
    """One pair as the release service streams it (a plain dict; extra keys are ignored).

    ``image_path`` is relative to the release directory (``images/ab/<sha>.jpg``) when images
    are copied, or absolute / a URL when they are referenced. ``width``, ``height``,
    ``license_url``, ``source_url`` and ``original_name`` describe the image for COCO and
    WebDataset; they may be ``None`` (size unknown) or empty.
    """

    pair_id: int
    image_id: int
    caption_id: int
    image_path: str
    image_sha256: str
    caption: str
    kind: str
    label: int
    label_source: str
    confidence: float
    n_judgments: int
    split: str
    cluster_id: int
    weight: float
    license: str
    width: int | None
    height: int | None
    license_url: str
    source_url: str
    original_name: str


def release_image_path(*, sha256: str, extension: str) -> str:
    """Where a copied image goes inside the release, e.g. ``images/ab/ab12….jpg``."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(ERROR_IMAGE_SHA256.format(sha256=sha256))
    return f"{IMAGES_DIR}/{sha256[:2]}/{sha256}.{extension.lower().lstrip('.')}"


class RowSink(Protocol):
    """A streaming writer: rows in, files out. ``abort`` removes what it wrote so far."""

    def write(self, row: ReleaseRow) -> None: ...

    def close(self) -> list[Path]: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class ExportResult:
    """What one pass wrote: the number of rows and every file, in sink order."""

    rows: int
    files: tuple[Path, ...]


def normalise_row(row: Mapping[str, Any]) -> ReleaseRow:
    """A validated copy of ``row`` with exact types and rounded floats; raises ``ValueError``."""
    # Spelled out field by field: this runs once per pair, a million times per release, and
    # a literal is about three times faster than looping over the column lists.
    try:
        out: dict[str, Any] = {
            "pair_id": int(row["pair_id"]),
            "image_id": int(row["image_id"]),
            "caption_id": int(row["caption_id"]),
            "image_path": str(row["image_path"]),
            "image_sha256": str(row["image_sha256"]),
            "caption": str(row["caption"]),
            "kind": str(row["kind"]),
            "label": row["label"],
            "label_source": str(row["label_source"]),
            "confidence": round(float(row["confidence"]), FLOAT_DIGITS) + 0.0,
            "n_judgments": int(row["n_judgments"]),
            "split": str(row["split"]),
            "cluster_id": int(row["cluster_id"]),
            "weight": round(float(row["weight"]), FLOAT_DIGITS) + 0.0,  # + 0.0: no -0.0
            "license": str(row["license"]),
            "width": row.get("width"),
            "height": row.get("height"),
            "license_url": row.get("license_url") or "",
            "source_url": row.get("source_url") or "",
            "original_name": row.get("original_name") or "",
        }
    except KeyError as missing:
        raise ValueError(
            ERROR_MISSING_FIELD.format(pair_id=row.get("pair_id"), field=missing.args[0])
        ) from None
    for name in _FLOAT_COLUMNS:
        value = out[name]
        # NaN and infinities have no JSON spelling and no meaning as a confidence or weight.
        if value != value or value in _INFINITIES:
            raise ValueError(
                ERROR_NOT_FINITE.format(pair_id=row.get("pair_id"), field=name, value=value)
            )
    if out["kind"] not in _KINDS:
        raise ValueError(ERROR_UNKNOWN_KIND.format(pair_id=out["pair_id"], value=out["kind"]))
    if out["label_source"] not in _LABEL_SOURCES:
        raise ValueError(
            ERROR_UNKNOWN_LABEL_SOURCE.format(pair_id=out["pair_id"], value=out["label_source"])
        )
    if out["split"] not in _SPLITS:
        raise ValueError(ERROR_UNKNOWN_SPLIT.format(pair_id=out["pair_id"], value=out["split"]))
    label = out["label"]
    if label not in LABELS:
        raise ValueError(ERROR_LABEL.format(pair_id=out["pair_id"], value=label))
    out["label"] = int(label)
    for name in ("width", "height"):
        if out[name] is not None:
            out[name] = int(out[name])
    for name in ("license_url", "source_url", "original_name"):
        if type(out[name]) is not str:
            out[name] = str(out[name])
    return cast(ReleaseRow, out)


class RowOrder:
    """Checks the order the grouping writers need: splits contiguous, then image_id, pair_id."""

    def __init__(self) -> None:
        self._done: set[str] = set()
        self._split: str | None = None
        # Only compared once a first row of the same split has set them.
        self._image_id = 0
        self._pair_id = 0

    def check(self, row: ReleaseRow) -> None:
        """Raise ``ValueError`` if ``row`` breaks the order of the rows before it."""
        split, image_id, pair_id = row["split"], row["image_id"], row["pair_id"]
        if split != self._split:
            if split in self._done:
                raise ValueError(ERROR_SPLIT_ORDER.format(split=split))
            if self._split is not None:
                self._done.add(self._split)
            self._split, self._image_id, self._pair_id = split, image_id, pair_id
            return
        if image_id != self._image_id:
            if image_id < self._image_id:
                raise ValueError(
                    ERROR_IMAGE_ORDER.format(image_id=image_id, previous=self._image_id)
                )
            self._image_id, self._pair_id = image_id, pair_id
            return
        if pair_id <= self._pair_id:
            raise ValueError(ERROR_PAIR_ORDER.format(pair_id=pair_id, previous=self._pair_id))
        self._pair_id = pair_id


def export_rows(*, rows: Iterable[Mapping[str, object]], sinks: Sequence[RowSink]) -> ExportResult:
    """Normalise each row once, check its order, and write it to every sink; then close them.

    Rows must come grouped by split (any split order), by ``image_id`` ascending within a split
    and by ``pair_id`` ascending within an image: ``ORDER BY split, image_id, pair_id``. On any
    error every sink is aborted, its partial files removed, and the error re-raised.
    """
    order = RowOrder()
    count = 0
    try:
        for raw in rows:
            row = normalise_row(raw)
            order.check(row)
            for sink in sinks:
                sink.write(row)
            count += 1
        files: list[Path] = []
        for sink in sinks:
            files.extend(sink.close())
    except BaseException:
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.abort()
        raise
    return ExportResult(rows=count, files=tuple(files))
