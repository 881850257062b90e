"""The pure readers: rows in file order with their line or id; what a row can be refused for
while reading; what makes a whole file unreadable."""

import csv
import io
import json

import pytest

from datasets.ingest import sources
from datasets.ingest.sources import (
    SourceError,
    display_text,
    parse_coco,
    parse_manifest,
    text_problem,
    url_problem,
)
from datasets.models import Image, ImageSource

COCO = {
    "info": {},
    "licenses": [{"id": 4, "name": "Attribution License", "url": "http://cc.org/by/2.0/"}],
    "images": [
        {"id": 1, "file_name": "a.jpg", "license": 4, "flickr_url": "http://flickr/a"},
        {"id": 2, "file_name": "b.jpg", "coco_url": "http://coco/b"},
        {"id": "bad"},
    ],
    "annotations": [
        {"id": 10, "image_id": 1, "caption": "a cat"},
        {"id": 11, "image_id": 1, "caption": "a small cat"},
        {"id": 12, "image_id": 99, "caption": "nobody's caption"},
        {"id": 13, "image_id": 2},
    ],
}


def _rows(parsed):
    return [(row.where, row.file_name, row.caption, row.error) for row in parsed.rows]


def test_coco_rows_are_the_image_entries_then_the_annotations():
    parsed = parse_coco(json.dumps(COCO).encode())
    a, b, bad, *annotations = parsed.rows
    assert (a.where, a.key, a.license_name, a.license_url, a.source_url) == (
        "image id 1",
        "1",
        "Attribution License",
        "http://cc.org/by/2.0/",
        "http://flickr/a",
    )
    assert b.source_url == "http://coco/b"
    assert (bad.where, bad.error) == ("images[2]", sources.COCO_BAD_IMAGE)
    assert [(r.where, r.ref, r.caption, r.error) for r in annotations] == [
        ("annotation id 10", "1", "a cat", ""),
        ("annotation id 11", "1", "a small cat", ""),
        ("annotation id 12", "99", "nobody's caption", ""),  # unknown ids are the job's call
        ("annotation id 13", "", None, sources.COCO_BAD_ANNOTATION),
    ]


@pytest.mark.parametrize(
    "image_id", [[1], True, 1.5, "1", None, {"id": 1}], ids=lambda v: type(v).__name__
)
def test_coco_ids_must_be_integers(image_id):
    raw = json.dumps({"images": [{"id": image_id, "file_name": "a.jpg"}], "annotations": []})
    [row] = parse_coco(raw.encode()).rows
    assert row.error == sources.COCO_BAD_IMAGE and row.key == ""


def test_coco_image_id_listed_twice_keeps_the_first():
    raw = json.dumps(
        {
            "images": [{"id": 5, "file_name": "a.jpg"}, {"id": 5, "file_name": "b.jpg"}],
            "annotations": [{"id": 1, "image_id": 5, "caption": "x"}],
        }
    )
    first, second, annotation = parse_coco(raw.encode()).rows
    assert (first.key, first.error) == ("5", "")
    assert second.key == "" and "listed again (first at images[0])" in second.error
    assert annotation.ref == "5"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "Not valid COCO captions JSON"),
        (b'{"images": []}', "'annotations'"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'["a list"]', "the top level is not an object"),
    ],
)
def test_unreadable_coco_files(raw, message):
    with pytest.raises(SourceError, match=message):
        parse_coco(raw)


def test_csv_rows_keep_their_physical_lines():
    parsed = parse_manifest(
        b"image,caption,license,source_url\n"
        b'a.jpg,"a dog, running",CC-BY,http://x/a\n'
        b'a.jpg,"two\nlines",,\n'
        b",orphan caption,,\n"
        b"b.jpg,a boat,,,extra\n",
        name="m.csv",
    )
    assert _rows(parsed) == [
        ("line 2", "a.jpg", "a dog, running", ""),
        ("line 3", "a.jpg", "two\nlines", ""),
        ("line 5", "", "orphan caption", sources.ROW_NEEDS),
        ("line 6", "", None, sources.ROW_EXTRA_VALUES),
    ]
    assert parsed.rows[0].license_name == "CC-BY" and parsed.rows[0].source_url == "http://x/a"


def test_a_stray_quote_costs_its_own_line_only():
    """The issue's example: one stray quote swallowed two rows into a 55-character caption."""
    parsed = parse_manifest(
        b'image,caption\nimp3.jpg,"a dog runs\nimp3.jpg,a cat\nimp4.jpg,"another "quoted" bad\n',
        name="m.csv",
    )
    assert [(row.where, row.file_name, row.caption) for row in parsed.rows] == [
        ("line 2", "", None),
        ("line 3", "imp3.jpg", "a cat"),
        ("line 4", "", None),
    ]
    assert "quote" in parsed.rows[0].error and "quote" in parsed.rows[2].error


def test_a_quote_that_swallows_a_complete_row_is_refused_even_when_closed_later():
    parsed = parse_manifest(
        b'image,caption\na.jpg,"opens here\nb.jpg,a complete row\nc.jpg,closes here"\n',
        name="m.csv",
    )
    assert [row.where for row in parsed.rows] == ["line 2", "line 3", "line 4"]
    assert "runs on over line 3" in parsed.rows[0].error
    assert parsed.rows[1].caption == "a complete row" and not parsed.rows[1].error
    assert parsed.rows[2].caption == 'closes here"'  # a quote inside a field is kept as text


@pytest.mark.parametrize(
    ("header", "delimiter", "name"),
    [(",", ",", "comma"), (";", ";", "semicolon"), ("\t", "\t", "tab"), ("|", "|", "bar")],
)
def test_the_delimiter_is_detected_and_named(header, delimiter, name):
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerows([["image", "caption", "license"], ["a.jpg", "one, two; three", "CC0"]])
    writer.writerows([["b.jpg", "plain", ""]])
    parsed = parse_manifest(buffer.getvalue().encode(), name="m.csv")
    assert parsed.notes[0] == f"Read as {name}-separated values."
    assert [(r.caption, r.license_name, r.error) for r in parsed.rows] == [
        ("one, two; three", "CC0", ""),
        ("plain", "", ""),
    ]


def test_missing_columns_say_what_was_read():
    with pytest.raises(SourceError, match=r"Missing required column\(s\): image, caption"):
        parse_manifest(b"file,text\na.jpg,hello\n", name="m.csv")
    with pytest.raises(SourceError, match="no header"):
        parse_manifest(b"\n\n", name="m.csv")


@pytest.mark.parametrize(
    ("raw", "note"),
    [
        ("image,caption\na.jpg,große Straße\n".encode("utf-8-sig"), "UTF-8-SIG"),
        ("image,caption\na.jpg,große Straße\n".encode("utf-16"), "UTF-16"),
        ("image,caption\na.jpg,große Straße\n".encode("utf-32"), "UTF-32"),
        ('image,caption\na.jpg,"große Straße, café"\n'.encode("cp1252"), "cp1252"),
    ],
    ids=["utf-8 bom", "utf-16", "utf-32", "cp1252"],
)
def test_encodings_by_bom_or_detection(raw, note):
    parsed = parse_manifest(raw, name="m.csv")
    assert any(note in line for line in parsed.notes), parsed.notes
    assert parsed.rows[0].caption.startswith("große Straße") and not parsed.rows[0].error


def test_bytes_that_are_not_utf8_refuse_their_row_naming_the_byte():
    raw = "image,caption\na.jpg,café\n".encode() + b"b.jpg,caf\xe9\n" + b"c.jpg,fine\n"
    parsed = parse_manifest(raw, name="m.csv")
    assert [row.error for row in parsed.rows] == [
        "",
        "'caption' holds bytes that are not UTF-8 (0xE9).",
        "",
    ]


def test_an_overlong_field_refuses_its_row_not_the_file():
    raw = b"image,caption\na.jpg," + b"x" * 200_000 + b"\nb.jpg,fine\n"
    rows = parse_manifest(raw, name="m.csv").rows
    assert "larger than" in rows[0].error and rows[1].caption == "fine"


def test_jsonl_rows_refused_one_by_one():
    raw = b"\n".join(
        [
            b'{"image": "a.jpg", "caption": "one"}',
            b"{broken",
            b"",
            b'["not", "an", "object"]',
            b'{"image": ["a.jpg"], "caption": "id as a list"}',
            b"[" * 50_000 + b"]" * 50_000,
            b'{"image": "b\xe9.jpg", "caption": "latin-1 in the name"}',
            b'{"image": "a.jpg", "caption": "two", "license": "CC0"}',
        ]
    )
    parsed = parse_manifest(raw, name="m.jsonl")
    assert [(row.where, bool(row.error)) for row in parsed.rows] == [
        ("line 1", False),
        ("line 2", True),
        ("line 4", True),
        ("line 5", True),
        ("line 6", True),
        ("line 7", True),
        ("line 8", False),
    ]
    assert parsed.rows[3].error == "'image' must be text, not a list."
    assert "nested too deeply" in parsed.rows[4].error
    assert "0xE9" in parsed.rows[5].error


def test_unknown_manifest_extension():
    with pytest.raises(SourceError, match=r"must end in \.csv"):
        parse_manifest(b"", name="m.xlsx")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>",
        "vbscript:msgbox",
        "//evil.example/x",
        "/relative/path",
        "ftp://example.org/x",
        "http://",
        "http://exa mple.org/",
        "https://example.org/\x00",
    ],
)
def test_only_http_urls_with_a_host_are_stored(url):
    assert url_problem(url, field="source_url", max_chars=1000)


@pytest.mark.parametrize("url", ["http://example.org", "HTTPS://example.org/a?b=c#d"])
def test_http_urls_pass(url):
    assert url_problem(url, field="source_url", max_chars=1000) == ""


def test_text_problems_name_the_field():
    assert text_problem("a\x00b", field="license") == "'license' contains a NUL character."
    assert text_problem("x" * 201, field="license", max_chars=200) == (
        "'license' is longer than 200 characters."
    )
    assert "unpaired surrogate" in text_problem("a\ud800", field="caption")
    assert display_text("bad\x00\x1b[31m\udce9", limit=100) == "bad\\x00\\x1b[31m\\xe9"


def test_column_limits_match_the_model():
    fields = {f.name: f.max_length for f in Image._meta.fields}
    assert fields["original_name"] == sources.NAME_MAX_CHARS
    assert fields["license_name"] == sources.LICENSE_NAME_MAX_CHARS
    assert fields["source_url"] == sources.SOURCE_URL_MAX_CHARS
    assert fields["license_url"] == sources.LICENSE_URL_MAX_CHARS
    extra = {f.name: f.max_length for f in ImageSource._meta.fields}
    assert all(extra[name] == fields[name] for name in ("original_name", "source_url"))
