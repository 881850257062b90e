"""The terminal commands: the same import job as the browser's, run in this process, with the
images read from a folder on this machine; a summary, every refused row listed, exit 1."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from datasets.models import Caption, Image, ImportJob, Pair
from tests import factories
from tests.sample_data import SHARED_DATA

pytestmark = pytest.mark.django_db


def _images_folder(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for seed, name in enumerate(names):
        (folder / name).write_bytes(factories.image_bytes(seed=seed))
    return folder


def _run(command: str, *args) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_manifest_import_is_idempotent_and_keeps_repeated_captions(project, tmp_path):
    images = _images_folder(tmp_path, ["a.jpg", "b.jpg"])
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "image,caption,license,source_url\n"
        "a.jpg,a dog on grass,CC0,http://example.org/a\n"
        "a.jpg,a dog on grass,,\n"  # the same text twice on purpose, as Flickr8k has once
        "b.jpg,  a   boat \u200b,,\n"
    )
    out = _run("import_manifest", project.slug, str(manifest), "--images", str(images))
    assert "Rows: 3 read: 3 added, 0 already present, 0 merged, 0 refused." in out
    assert "Images: 2 added. Captions: 3 added." in out
    job = ImportJob.objects.get()
    assert f"/projects/{project.slug}/imports/{job.pk}/" in out
    assert project.images.count() == 2
    assert Caption.objects.filter(image__project=project).count() == 3
    assert Pair.objects.filter(image__project=project, kind="positive").count() == 3
    a = project.images.get(original_name="a.jpg")
    assert (a.license_name, a.source_url, a.source) == ("CC0", "http://example.org/a", "manifest")
    assert project.images.get(original_name="b.jpg").captions.get().text == "a boat"

    again = _run("import_manifest", project.slug, str(manifest), "--images", str(images))
    assert "3 already present" in again and "Nothing new" in again
    assert project.images.count() == 2
    assert Caption.objects.filter(image__project=project).count() == 3


def test_import_reports_problems_keeps_valid_rows_and_exits_non_zero(project, tmp_path, capsys):
    images = _images_folder(tmp_path, ["good.jpg"])
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"image": "good.jpg", "caption": "a fine picture"}\n'
        '{"image": "missing.jpg", "caption": "no file"}\n'
        '{"image": "broken.jpg", "caption": "bad bytes"}\n'
        '{"image": "../../etc/passwd", "caption": "escape"}\n'
        '{"image": "good.jpg", "caption": "   "}\n'
        "{oops\n"
    )
    with pytest.raises(CommandError) as raised:
        call_command("import_manifest", project.slug, str(manifest), "--images", str(images))
    assert raised.value.returncode == 1
    err = capsys.readouterr().err
    assert "line 2: image file not found: missing.jpg" in err
    assert "line 3 (broken.jpg): Not a readable image" in err
    assert "line 4: image path leaves the images folder" in err
    assert "line 5 (good.jpg): Caption is empty." in err
    assert "line 6: not valid JSON" in err
    assert list(project.images.values_list("original_name", flat=True)) == ["good.jpg"]
    assert Caption.objects.filter(image__project=project).count() == 1


def test_the_same_bytes_under_two_names_keep_both_captions(project, tmp_path):
    """Issue 13, 1: one caption was lost for good, and a re-run said "Nothing new"."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("orig.jpg", "copy.jpg"):
        (folder / name).write_bytes(factories.image_bytes(seed=5))
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "image,caption,source_url\n"
        "orig.jpg,a red square,http://example.org/orig\n"
        "copy.jpg,a square in red,http://example.org/copy\n"
    )
    out = _run("import_manifest", project.slug, str(manifest), "--images", str(folder))
    assert "2 read: 1 added, 0 already present, 1 merged" in out
    image = project.images.get()
    assert sorted(image.captions.values_list("text", flat=True)) == [
        "a red square",
        "a square in red",
    ]
    [extra] = image.extra_sources.all()
    assert (extra.original_name, extra.source_url, extra.source) == (
        "copy.jpg",
        "http://example.org/copy",
        "manifest",
    )
    assert "2 already present" in _run(
        "import_manifest", project.slug, str(manifest), "--images", str(folder)
    )


def test_coco_import_keeps_licences(project, tmp_path):
    images = _images_folder(tmp_path, ["1.jpg", "2.jpg"])
    coco = tmp_path / "captions.json"
    coco.write_text(
        json.dumps(
            {
                "licenses": [{"id": 1, "name": "Attribution License", "url": "http://cc/by"}],
                "images": [
                    {"id": 1, "file_name": "1.jpg", "license": 1, "flickr_url": "http://f/1"},
                    {"id": 2, "file_name": "2.jpg", "license": 1, "coco_url": "http://c/2"},
                ],
                "annotations": [
                    {"id": 5, "image_id": 1, "caption": "one"},
                    {"id": 6, "image_id": 2, "caption": "two"},
                ],
            }
        )
    )
    _run("import_coco", project.slug, str(coco), "--images", str(images))
    first = project.images.get(original_name="1.jpg")
    assert (first.license_name, first.license_url, first.source_url) == (
        "Attribution License",
        "http://cc/by",
        "http://f/1",
    )
    assert project.images.get(original_name="2.jpg").source_url == "http://c/2"


def test_import_into_unknown_project_fails_clearly(db, tmp_path):
    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        call_command("import_coco", "nope", str(tmp_path / "x.json"), "--images", str(tmp_path))


def test_malformed_coco_file_fails_clearly(project, tmp_path):
    coco = tmp_path / "bad.json"
    coco.write_text("{nope")
    with pytest.raises(CommandError, match="Not valid COCO captions JSON"):
        call_command("import_coco", project.slug, str(coco), "--images", str(tmp_path))
    assert ImportJob.objects.get().status == "failed"


def test_an_oversized_manifest_is_refused_before_reading(project, tmp_path, settings):
    settings.CONCORD_IMPORT_MAX_BYTES = 100
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,caption\n" + "a.jpg,caption\n" * 20)
    with pytest.raises(CommandError, match="the limit for a manifest or COCO file is"):
        call_command("import_manifest", project.slug, str(manifest), "--images", str(tmp_path))


requires_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"sample data folder {SHARED_DATA} is absent"
)


@requires_shared
def test_coco_mini_sample(project, capsys):
    folder = SHARED_DATA / "coco-mini"
    call_command(
        "import_coco",
        project.slug,
        str(folder / "captions.json"),
        "--images",
        str(folder / "images"),
    )
    assert project.images.count() == 80
    assert Caption.objects.filter(image__project=project).count() == 400
    assert not project.images.filter(license_name="").exists()
    assert "Images: 80 added" in capsys.readouterr().out


@requires_shared
def test_flickr8k_sample_imports_then_adds_nothing(project, capsys):
    folder = SHARED_DATA / "flickr8k-1k"
    args = ("import_manifest", project.slug, str(folder / "captions.csv"), "--images")
    call_command(*args, str(folder / "images"))
    assert Image.objects.filter(project=project).count() == 1000
    assert Caption.objects.filter(image__project=project).count() == 5000
    capsys.readouterr()
    call_command(*args, str(folder / "images"))  # exits 0: no CommandError
    out = capsys.readouterr().out
    assert "Rows: 5000 read: 0 added, 5000 already present, 0 merged, 0 refused." in out
    assert "Images: 0 added. Captions: 0 added." in out
    assert Caption.objects.filter(image__project=project).count() == 5000


def test_the_encoding_can_be_chosen_in_the_terminal_and_a_repeated_column_fails_clearly(
    project, tmp_path
):
    images = _images_folder(tmp_path, ["a.jpg"])
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("image,caption\na.jpg,Žluťoučký kůň\n".encode("cp1250"))
    out = _run(
        "import_manifest",
        project.slug,
        str(manifest),
        "--images",
        str(images),
        "--encoding",
        "cp1250",
    )
    assert "Read as cp1250 (chosen)." in out
    assert project.images.get().captions.get().text == "Žluťoučký kůň"
    assert ImportJob.objects.get().options["encoding"] == "cp1250"

    repeated = tmp_path / "r.csv"
    repeated.write_text("image,caption,Caption\na.jpg,first caption col,second caption col\n")
    with pytest.raises(CommandError, match="names the column 'caption' 2 times"):
        call_command("import_manifest", project.slug, str(repeated), "--images", str(images))
    assert project.images.get().captions.count() == 1
