"""Parsers for existing datasets: COCO captions JSON and CSV/JSONL manifests.

They turn a file into plain records, one per image with all its captions, plus the problems found,
each with the line or id a person needs to fix it. Valid records are kept even when others fail.
"""

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

COCO_MALFORMED = "Not valid COCO captions JSON: {detail}"
COCO_MISSING_KEY = "Missing top-level key '{key}'."
COCO_BAD_IMAGE = "image entry {where}: needs an integer 'id' and a 'file_name'."
COCO_BAD_ANNOTATION = "annotation {where}: needs 'image_id' and a text 'caption'."
COCO_UNKNOWN_IMAGE = "annotation {annotation_id}: refers to unknown image id {image_id}."
MANIFEST_MALFORMED = "Not valid {kind}: {detail}"
MANIFEST_MISSING_COLUMNS = "Missing required column(s): {columns}."
MANIFEST_BAD_ROW = "line {line}: {detail}"
MANIFEST_UNKNOWN_FORMAT = "Manifest must end in .csv, .jsonl or .ndjson, not '{suffix}'."

MANIFEST_REQUIRED = ("image", "caption")


class SourceError(ValueError):
    """The file as a whole cannot be read; nothing from it is imported."""


@dataclass
class ImportRecord:
    file_name: str
    where: str  # how a person finds this record in the source file
    captions: list[tuple[str, str]] = field(default_factory=list)  # (text, where)
    license_name: str = ""
    license_url: str = ""
    source_url: str = ""


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


def parse_coco(raw: bytes | str) -> tuple[list[ImportRecord], list[Problem]]:
    """Read a COCO captions file (info, licenses, images, annotations)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(COCO_MALFORMED.format(detail=exc)) from exc
    if not isinstance(data, dict):
        raise SourceError(COCO_MALFORMED.format(detail="the top level is not an object"))
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise SourceError(COCO_MISSING_KEY.format(key=key))

    licenses = {
        entry.get("id"): entry for entry in data.get("licenses") or [] if isinstance(entry, dict)
    }
    problems: list[Problem] = []
    records: dict[int, ImportRecord] = {}
    for index, entry in enumerate(data["images"]):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        file_name = entry.get("file_name") if isinstance(entry, dict) else None
        if not isinstance(image_id, int) or not isinstance(file_name, str) or not file_name:
            problems.append(Problem("", COCO_BAD_IMAGE.format(where=f"#{index}")))
            continue
        licence = licenses.get(entry.get("license"), {})
        records[image_id] = ImportRecord(
            file_name=file_name,
            where=f"image {image_id}",
            license_name=str(licence.get("name", "")),
            license_url=str(licence.get("url", "")),
            source_url=str(entry.get("flickr_url") or entry.get("coco_url") or ""),
        )
    for index, entry in enumerate(data["annotations"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("caption"), str):
            problems.append(Problem("", COCO_BAD_ANNOTATION.format(where=f"#{index}")))
            continue
        annotation_id = entry.get("id", f"#{index}")
        record = records.get(entry.get("image_id"))
        if record is None:
            problems.append(
                Problem(
                    "",
                    COCO_UNKNOWN_IMAGE.format(
                        annotation_id=annotation_id, image_id=entry.get("image_id")
                    ),
                )
            )
            continue
        record.captions.append((entry["caption"], f"annotation {annotation_id}"))
    return list(records.values()), problems


def parse_manifest(path: Path) -> tuple[list[ImportRecord], list[Problem]]:
    """Read a CSV or JSONL manifest: one row per caption with image, caption, license, source_url."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(path)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(path)
    else:
        raise SourceError(MANIFEST_UNKNOWN_FORMAT.format(suffix=suffix))
    return _group_rows(rows)


def _csv_rows(path: Path) -> Iterable[tuple[int, dict | None, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(MANIFEST_MALFORMED.format(kind="CSV", detail=exc)) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in MANIFEST_REQUIRED if name not in columns]
    if missing:
        raise SourceError(MANIFEST_MISSING_COLUMNS.format(columns=", ".join(missing)))
    try:
        for row in reader:
            # line_num counts physical lines, so quoted multi-line captions still point right.
            cleaned = {(key or "").strip(): value for key, value in row.items()}
            if None in row:  # more cells than headers
                yield reader.line_num, None, "more values than columns"
            else:
                yield reader.line_num, cleaned, ""
    except csv.Error as exc:
        raise SourceError(
            MANIFEST_MALFORMED.format(kind="CSV", detail=f"line {reader.line_num}: {exc}")
        ) from exc


def _jsonl_rows(path: Path) -> Iterable[tuple[int, dict | None, str]]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg})"
                continue
            if not isinstance(row, dict):
                yield number, None, "not a JSON object"
                continue
            yield number, row, ""


def _group_rows(
    rows: Iterable[tuple[int, dict | None, str]],
) -> tuple[list[ImportRecord], list[Problem]]:
    records: dict[str, ImportRecord] = {}
    problems: list[Problem] = []
    for line, row, error in rows:
        if row is None:
            problems.append(Problem("", MANIFEST_BAD_ROW.format(line=line, detail=error)))
            continue
        image = str(row.get("image") or "").strip()
        caption = row.get("caption")
        if not image or not isinstance(caption, str):
            problems.append(
                Problem(
                    "", MANIFEST_BAD_ROW.format(line=line, detail="needs 'image' and 'caption'")
                )
            )
            continue
        record = records.get(image)
        if record is None:
            record = records[image] = ImportRecord(
                file_name=image,
                where=f"line {line}",
                license_name=str(row.get("license") or "").strip(),
                source_url=str(row.get("source_url") or "").strip(),
            )
        record.captions.append((caption, f"line {line}"))
    return list(records.values()), problems
