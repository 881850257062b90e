import json

import pytest

from datasets.ingest.sources import SourceError, parse_coco, parse_manifest

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


def test_parse_coco_keeps_licences_urls_and_reports_problems_by_id():
    records, problems = parse_coco(json.dumps(COCO))
    by_name = {record.file_name: record for record in records}
    assert by_name["a.jpg"].license_name == "Attribution License"
    assert by_name["a.jpg"].license_url == "http://cc.org/by/2.0/"
    assert by_name["a.jpg"].source_url == "http://flickr/a"
    assert by_name["b.jpg"].source_url == "http://coco/b"
    assert [text for text, _ in by_name["a.jpg"].captions] == ["a cat", "a small cat"]
    messages = [str(problem) for problem in problems]
    assert "annotation 12: refers to unknown image id 99." in messages
    assert any("image entry #2" in message for message in messages)
    assert any("annotation #3" in message for message in messages)


@pytest.mark.parametrize(
    ("raw", "message"),
    [("{not json", "Not valid COCO captions JSON"), ('{"images": []}', "'annotations'")],
)
def test_parse_coco_rejects_malformed_files(raw, message):
    with pytest.raises(SourceError, match=message):
        parse_coco(raw)


def test_parse_csv_manifest_groups_captions_and_reports_lines(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "image,caption,license,source_url\n"
        'a.jpg,"a dog, running",CC-BY,http://x/a\n'
        "a.jpg,a brown dog,,\n"
        ",orphan caption,,\n"
        "b.jpg,a boat,,,extra\n"
    )
    records, problems = parse_manifest(path)
    assert [(r.file_name, [t for t, _ in r.captions]) for r in records] == [
        ("a.jpg", ["a dog, running", "a brown dog"])
    ]
    assert records[0].license_name == "CC-BY" and records[0].source_url == "http://x/a"
    assert [str(p) for p in problems] == [
        "line 4: needs 'image' and 'caption'",
        "line 5: more values than columns",
    ]


def test_csv_manifest_missing_columns(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("file,text\na.jpg,hello\n")
    with pytest.raises(SourceError, match="Missing required column"):
        parse_manifest(path)


def test_parse_jsonl_manifest_reports_bad_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"image": "a.jpg", "caption": "one"}\n'
        "{broken\n"
        "\n"
        '["not", "an", "object"]\n'
        '{"image": "a.jpg", "caption": "two", "license": "CC0"}\n'
    )
    records, problems = parse_manifest(path)
    assert [t for t, _ in records[0].captions] == ["one", "two"]
    assert [p.message.split(":")[0] for p in problems] == ["line 2", "line 4"]


def test_unknown_manifest_extension(tmp_path):
    path = tmp_path / "m.xlsx"
    path.write_text("")
    with pytest.raises(SourceError, match=r"must end in \.csv"):
        parse_manifest(path)
