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


# --- Repeated names: never "the last one wins" ----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "column", "positions"),
    [
        ("image,caption,caption", "caption", "2, 3"),
        ("image,Caption, CAPTION ", "caption", "2, 3"),
        ("image;caption;license;License", "license", "3, 4"),
        ("image\tcaption\tImage", "image", "1, 3"),
        ("source_url|image|caption|source_url", "source_url", "1, 4"),
    ],
)
def test_a_header_naming_a_column_twice_refuses_the_file_naming_it(header, column, positions):
    delimiter = next(d for d in ",;\t|" if d in header)
    raw = f"{header}\n{delimiter.join(['a.jpg', 'first', 'second', 'third'][: header.count(delimiter) + 1])}\n"
    with pytest.raises(SourceError) as refused:
        parse_manifest(raw.encode(), name="m.csv")
    assert str(refused.value) == sources.MANIFEST_REPEATED_COLUMN.format(
        column=column, count=2, positions=positions
    )


def test_columns_the_importer_does_not_use_are_named_in_a_note():
    parsed = parse_manifest(b"image,caption,notes,Photographer\na.jpg,x,n,p\n", name="m.csv")
    assert sources.MANIFEST_IGNORED_COLUMNS.format(columns="'notes', 'photographer'") in (
        parsed.notes
    )
    assert not any(
        "Ignored" in note for note in parse_manifest(b"image,caption\na,b\n", name="m.csv").notes
    )


def test_jsonl_keys_are_read_in_any_case_and_a_repeated_key_refuses_its_row():
    raw = (
        b'{"IMAGE": "a.jpg", " Caption ": "upper case keys"}\n'
        b'{"image": "b.jpg", "caption": "first", "caption": "second"}\n'
        b'{"image": "c.jpg", "caption": "one", "Caption": "two"}\n'
        b'{"image": "d.jpg", "caption": "fine", "extra": {"k": 1, "k": 2}}\n'
    )
    rows = parse_manifest(raw, name="m.jsonl").rows
    assert [(r.file_name, r.caption, r.error) for r in rows] == [
        ("a.jpg", "upper case keys", ""),
        ("b.jpg", None, sources.ROW_REPEATED_KEY.format(key="caption")),
        ("c.jpg", None, sources.ROW_REPEATED_KEY.format(key="caption")),
        ("d.jpg", "fine", ""),  # a repeat inside a value Concord does not read is harmless
    ]


def test_coco_repeats_are_refused_not_overwritten():
    raw = (
        b'{"licenses": [{"id": 1, "name": "CC0", "url": "http://cc.org/0"}],'
        b' "images": [{"id": 1, "file_name": "lost.jpg"}],'
        b' "images": [{"id": 1, "file_name": "a.jpg", "license": 1},'
        b'            {"id": 2, "file_name": "b.jpg", "file_name": "c.jpg"},'
        b'            {"id": 3, "file_name": "d.jpg", "license": 99}],'
        b' "annotations": [{"id": 7, "image_id": 1, "caption": "first"},'
        b'                 {"id": 7, "image_id": 1, "caption": "same id again"},'
        b'                 {"id": 8, "image_id": 1, "caption": "x", "caption": "y"}]}'
    )
    with pytest.raises(SourceError, match="'images' appears more than once"):
        parse_coco(raw)
    fixed = raw.replace(b' "images": [{"id": 1, "file_name": "lost.jpg"}],', b"")
    parsed = parse_coco(fixed)
    assert [(r.where, r.error) for r in parsed.rows] == [
        ("image id 1", ""),
        ("image id 2", sources.ROW_REPEATED_KEY.format(key="file_name")),
        ("image id 3", ""),
        ("annotation id 7", ""),
        ("annotation id 7", sources.COCO_DUPLICATE_ANNOTATION.format(ann_id=7, first=0)),
        ("annotation id 8", sources.ROW_REPEATED_KEY.format(key="caption")),
    ]
    assert parsed.notes == [sources.COCO_UNKNOWN_LICENSES.format(count=1, ids="99")]


# --- Encodings: the person may choose; a short Western file is read as Windows-1252 -----------


@pytest.mark.parametrize(
    "text",
    [
        "image;caption;license\r\nimg2.jpg;Café au lait, très chaud – 2 €;CC BY\r\n",
        "image,caption\na.jpg,très\n",
        # The QA's French Excel export, exactly (job 89 stored "trčs").
        "image;caption;license\r\nimg2.jpg;Café au lait, très chaud – 2 €;CC BY\r\n"
        'img3.jpg;"Une phrase; avec ""guillemets""";CC\r\n',
        "image,caption\na.jpg,Señor Muñoz à la fenêtre\nb.jpg,Ça va?\n",
        "image,caption\na.jpg,Größe ändern\n",
    ],
)
def test_a_short_windows_1252_file_is_read_as_windows_1252(text):
    parsed = parse_manifest(text.encode("cp1252"), name="m.csv")
    assert any("read as cp1252 (detected)" in note for note in parsed.notes), parsed.notes
    expected = text.splitlines()[1].split(text[5])[1]
    assert parsed.rows[0].caption == expected and not parsed.rows[0].error


def test_other_legacy_encodings_are_still_detected_when_they_read_better():
    text = "image,caption\na.jpg,Собака бежит по траве рядом с домом\n" * 3
    parsed = parse_manifest(text.encode("cp1251"), name="m.csv")
    assert parsed.rows[0].caption == "Собака бежит по траве рядом с домом"
    assert not any("cp1252" in note for note in parsed.notes)


def test_a_chosen_encoding_is_used_and_named():
    raw = "image,caption\na.jpg,Žluťoučký kůň\n".encode("cp1250")
    parsed = parse_manifest(raw, name="m.csv", encoding="cp1250")
    assert parsed.rows[0].caption == "Žluťoučký kůň"
    assert "Read as cp1250 (chosen)." in parsed.notes
    # Bytes the chosen encoding has no character for refuse their row only.
    parsed = parse_manifest(
        b"image,caption\na.jpg,x\x81y\nb.jpg,fine\n", name="m.csv", encoding="cp1252"
    )
    assert [bool(r.error) for r in parsed.rows] == [True, False]
    assert "0x81" in parsed.rows[0].error
    # A byte-order mark is unambiguous: it wins, and the note says so.
    parsed = parse_manifest(
        "image,caption\na.jpg,é\n".encode("utf-8-sig"), name="m.csv", encoding="cp1252"
    )
    assert parsed.rows[0].caption == "é"
    assert parsed.notes[-1] == "Read as UTF-8-SIG (byte-order mark), not cp1252 as chosen."
    with pytest.raises(ValueError, match="Unknown encoding"):
        parse_manifest(b"image,caption\n", name="m.csv", encoding="rot13")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_read_not_refused_as_a_strange_header(encoding):
    raw = "image,caption\na.jpg,große Straße\n".encode(encoding)
    parsed = parse_manifest(raw, name="m.csv")
    assert parsed.rows[0].caption == "große Straße" and not parsed.rows[0].error
    assert f"Read as {encoding.upper()} (no byte-order mark; detected)." in parsed.notes
    jsonl = '{"image": "a.jpg", "caption": "ok"}\n'.encode(encoding)
    assert parse_manifest(jsonl, name="m.jsonl").rows[0].caption == "ok"
    # One NUL in a UTF-8 file is no UTF-16: its row is refused as before.
    [row] = parse_manifest(b"image,caption\na.jpg,a \x00 b\n", name="m.csv").rows
    assert "NUL" in row.error


def test_a_header_with_an_over_long_column_still_finds_the_others():
    raw = b"image,caption," + b"n" * 200_000 + b"\na.jpg,fine,x\n"
    parsed = parse_manifest(raw, name="m.csv")
    assert [(r.file_name, r.caption) for r in parsed.rows] == [("a.jpg", "fine")]


def test_a_jsonl_error_says_where_on_its_line():
    [row] = parse_manifest(b'{"image": "a.jpg", "caption": "tab\tinside"}\n', name="m.jsonl").rows
    assert row.error == "not valid JSON (Invalid control character at column 35)."
