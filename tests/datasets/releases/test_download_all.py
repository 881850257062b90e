"""A release downloads as one streamed zip, from local storage and from S3 (moto's server), and
its page groups the files by folder; a pair excluded in the data browser stays out of releases."""

import hashlib
import io
import zipfile

import pytest
from django.test import Client
from django.urls import reverse

from annotate.models import ItemLabel
from datasets.browse import services as browse
from datasets.ingest.services.uploads import caption_create
from datasets.models import Pair
from datasets.releases import services
from datasets.releases.archive import Member, files_by_folder, zip_stream
from tests import factories
from tests.s3 import new_bucket, s3_storages

pytestmark = pytest.mark.django_db


def _labelled_project(project, count=4):
    pairs = []
    for seed in range(count):
        caption = caption_create(
            image=factories.image(project=project, seed=seed),
            text=f"A street scene number {seed}",
            source="api",
        )
        pair = Pair.objects.get(caption=caption)
        ItemLabel.objects.create(
            project=project, pair=pair, label=1, confidence=0.9, judgments=3, status="agreed"
        )
        pairs.append(pair)
    return pairs


def _cut(project, manager, **options):
    chosen = services.release_options(project=project, **options)
    release = services.release_request(project=project, user=manager, options=chosen)
    release = services.release_build(release_id=release.pk)
    assert release.status == "ready", release.error
    return release


def _download_all(client: Client, release) -> zipfile.ZipFile:
    url = reverse(
        "release-download-all", kwargs={"slug": release.project.slug, "version": release.version}
    )
    response = client.get(url)
    assert response.status_code == 200
    assert response.streaming
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="{release.project.slug}-v{release.version}.zip"'
    )
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def _check_archive(archive: zipfile.ZipFile, release) -> None:
    assert archive.testzip() is None
    listed = services.release_files(release=release)
    assert archive.namelist() == [f["path"] for f in listed]
    for entry in listed:
        data = archive.read(entry["path"])
        assert len(data) == entry["size"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_download_all_is_every_listed_file_byte_for_byte(client, project, manager):
    _labelled_project(project)
    release = _cut(project, manager, formats=["jsonl", "csv", "webdataset"], copy_images=False)
    client.force_login(manager)
    _check_archive(_download_all(client, release), release)


def test_download_all_reads_object_storage(client, project, manager, settings):
    settings.STORAGES = s3_storages(new_bucket())
    _labelled_project(project, count=3)
    release = _cut(project, manager, formats=["jsonl"], copy_images=True)
    client.force_login(manager)
    archive = _download_all(client, release)
    _check_archive(archive, release)
    assert any(name.startswith("images/") for name in archive.namelist())


def test_release_page_groups_files_by_folder_and_shows_the_datasheet(client, project, manager):
    _labelled_project(project)
    release = _cut(project, manager, formats=["jsonl"], copy_images=True)
    client.force_login(manager)
    page = client.get(
        reverse("release-detail", kwargs={"slug": project.slug, "version": release.version})
    )
    html = page.content.decode()
    folders = {f.name: f.count for f in page.context["folders"]}
    assert folders[""] >= 2 and folders["images"] == 4
    assert 'data-folder="images"' in html and "4 files" in html
    assert reverse("release-download-all", args=[project.slug, release.version]) in html
    assert "<h1" in html and page.context["datasheet"] and "<table" in html


def test_download_all_of_an_unready_release_is_404(client, project, manager):
    chosen = services.release_options(project=project)
    release = services.release_request(project=project, user=manager, options=chosen)
    client.force_login(manager)
    url = reverse("release-download-all", kwargs={"slug": project.slug, "version": release.version})
    assert client.get(url).status_code == 404


def test_excluded_pairs_stay_out_of_the_next_release(project, manager):
    pairs = _labelled_project(project)
    assert _cut(project, manager, formats=["jsonl"]).counts["pairs"] == 4
    outcome = browse.selection_act(
        project=project, pair_ids=[pairs[0].pk], action=browse.EXCLUDE, by=manager
    )
    assert outcome.done == 1
    assert _cut(project, manager, formats=["jsonl"]).counts["pairs"] == 3


def test_zip_stream_of_many_chunks_and_folders():
    big = bytes(range(256)) * 5000
    members = [
        Member(path="data.jsonl", open=lambda: io.BytesIO(b'{"a": 1}\n' * 1000)),
        Member(path="images/x.png", open=lambda: io.BytesIO(big)),
    ]
    chunks = list(zip_stream(members, chunk=4096))
    assert len(chunks) > 10
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.read("images/x.png") == big
    assert archive.getinfo("images/x.png").compress_type == zipfile.ZIP_STORED
    assert archive.getinfo("data.jsonl").compress_type == zipfile.ZIP_DEFLATED
    grouped = files_by_folder(
        [
            {"path": "images/ab/x.png", "size": 3},
            {"path": "a.csv", "size": 2},
            {"path": "images/cd/y.png", "size": 4},
        ]
    )
    assert [(g.name, g.count, g.total_bytes) for g in grouped] == [("", 1, 2), ("images", 2, 7)]
