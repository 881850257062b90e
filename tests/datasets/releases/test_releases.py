"""Releases through the real service: every format read back by its own reader."""

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.urls import reverse
from pycocotools.coco import COCO

from annotate.models import ItemLabel
from datasets.ingest.services.uploads import caption_create
from datasets.models import (
    ClusterMember,
    DuplicateCluster,
    Image,
    ImageSplit,
    Pair,
    Release,
    ReleaseStatus,
)
from datasets.releases import services
from datasets.releases.exporters import verify_manifest
from datasets.releases.splits import split_for_cluster
from tests import factories


@pytest.fixture
def releases_root(settings):
    """The local folder behind the "releases" storage (tests/conftest.py)."""
    return settings.CONCORD_RELEASES_ROOT


def _download(release, tmp_path) -> Path:
    """The release's files as a consumer gets them: fetched from storage, checked."""
    target = tmp_path / "downloaded" / release.name
    services.release_download(release=release, target=target)
    return target


def _label(pair, *, label=1, status="agreed", confidence=0.9, judgments=3):
    return ItemLabel.objects.create(
        project=pair.image.project,
        pair=pair,
        label=label,
        confidence=confidence,
        judgments=judgments,
        status=status,
    )


def _dataset(project, *, count=12):
    """count images with a judged positive each, plus one of every other label case."""
    images = [factories.image(project=project, seed=seed) for seed in range(count)]
    positives = []
    for index, image in enumerate(images):
        caption = caption_create(image=image, text=f"A street scene number {index}", source="api")
        pair = Pair.objects.get(caption=caption)
        _label(pair)
        positives.append(pair)
    # A random negative nobody judged: a negative by construction.
    negative = Pair.objects.create(
        image=images[0], caption=positives[1].caption, kind="random_negative"
    )
    # A judged negative, agreed no match.
    judged_negative = Pair.objects.create(
        image=images[2], caption=positives[3].caption, kind="hard_negative"
    )
    _label(judged_negative, label=0)
    # A pending positive (left out) and a disputed one (left out).
    pending = caption_create(image=images[1], text="Still waiting for its judgments", source="api")
    disputed = caption_create(image=images[2], text="People disagree about this one", source="api")
    _label(Pair.objects.get(caption=disputed), status="disputed", confidence=0.5)
    # A trusted import: a positive without judgments.
    project.trusted_sources = ["coco"]
    project.save(update_fields=["trusted_sources"])
    imported = caption_create(image=images[3], text="Imported from a trusted source", source="coco")
    return {
        "images": images,
        "positives": positives,
        "negative": negative,
        "pending": Pair.objects.get(caption=pending),
        "imported": Pair.objects.get(caption=imported),
    }


def _cluster(canonical, *members):
    cluster = DuplicateCluster.objects.create(
        project=canonical.project, canonical=canonical, size=1 + len(members), doubt=2
    )
    for image in (canonical, *members):
        ClusterMember.objects.update_or_create(image=image, defaults={"cluster": cluster})
    return cluster


def _cut(project, manager, **options):
    chosen = services.release_options(project=project, **options)
    release = services.release_request(project=project, user=manager, options=chosen)
    return services.release_build(release_id=release.pk)


def _files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_release_loads_in_every_reader(
    project, manager, django_capture_on_commit_callbacks, tmp_path
):
    data = _dataset(project)
    _cluster(data["images"][4], data["images"][5])
    with django_capture_on_commit_callbacks() as callbacks:
        chosen = services.release_options(project=project)
        release = services.release_request(project=project, user=manager, options=chosen)
    assert len(callbacks) == 1  # the build is enqueued after commit
    assert release.version == 1 and release.status == ReleaseStatus.QUEUED
    release = services.release_build(release_id=release.pk)
    assert release.status == ReleaseStatus.READY, release.error
    directory = _download(release, tmp_path)
    assert verify_manifest(directory=directory) == []

    lines = (directory / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    by_pair = {row["pair_id"]: row for row in rows}
    assert by_pair[data["negative"].pk]["label_source"] == "construction"
    assert by_pair[data["negative"].pk]["label"] == 0
    assert by_pair[data["imported"].pk]["label_source"] == "import"
    assert by_pair[data["positives"][0].pk]["label_source"] == "crowd"
    assert data["pending"].pk not in by_pair
    # The duplicate (image 5) is held back; its canonical image is released.
    released_images = {row["image_id"] for row in rows}
    assert data["images"][5].pk not in released_images
    assert data["images"][4].pk in released_images
    assert [(r["split"], r["image_id"], r["pair_id"]) for r in rows] == sorted(
        ((r["split"], r["image_id"], r["pair_id"]) for r in rows),
        key=lambda k: (("train", "val", "test").index(k[0]), k[1], k[2]),
    )
    # WebDataset shards hold the images, so the release stores no other copy: rows name the
    # stored media file.
    assert not (directory / "images").exists()
    for row in rows:
        assert default_storage.exists(row["image_path"])

    table = pq.read_table(directory / "pairs.parquet")
    assert table.num_rows == len(rows)
    frame = pd.read_parquet(directory / "pairs.parquet")
    assert set(frame["pair_id"]) == set(by_pair)
    assert frame.groupby("cluster_id")["split"].nunique().max() == 1
    assert len(pd.read_csv(directory / "pairs.csv")) == len(rows)

    positives_per_split = frame[frame.label == 1].groupby("split").size().to_dict()
    for split, expected in positives_per_split.items():
        coco = COCO(str(directory / "coco" / f"captions_{split}.json"))
        assert len(coco.getAnnIds()) == expected
        assert set(coco.getImgIds()) == set(frame[frame.split == split]["image_id"])

    shards = sorted(str(p) for p in (directory / "webdataset").glob("*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False))
    assert len(samples) == frame["image_id"].nunique()
    sample = samples[0]
    meta = json.loads(sample["json"])
    assert sample["jpg"][:2] == b"\xff\xd8"
    assert meta["pairs"] or meta.get("captions") is not None

    datasheet = (directory / "DATASHEET.md").read_text(encoding="utf-8")
    assert "# Datasheet: Street scenes v1" in datasheet
    assert "Each image is stored once, inside the WebDataset shards" in datasheet
    assert json.loads((directory / "manifest.json").read_text())["release"]["images"] == (
        "in webdataset shards"
    )
    assert release.counts["pairs"] == len(rows)
    assert release.counts["label_sources"]["construction"] == 1
    assert ImageSplit.objects.filter(release=release).count() == project.images.count()


def test_copied_images_are_stored_once_under_images(project, manager, tmp_path):
    _dataset(project, count=4)
    release = _cut(project, manager, formats=["jsonl", "coco"], copy_images=True)
    assert release.status == ReleaseStatus.READY, release.error
    directory = _download(release, tmp_path)
    assert verify_manifest(directory=directory) == []
    assert not (directory / "webdataset").exists()
    rows = [json.loads(line) for line in (directory / "pairs.jsonl").read_text().splitlines()]
    copies = sorted(p for p in (directory / "images").rglob("*") if p.is_file())
    assert len(copies) == len({row["image_id"] for row in rows})
    for row in rows:
        assert (directory / row["image_path"]).read_bytes() == default_storage.open(
            Image.objects.get(pk=row["image_id"]).file.name
        ).read()
    assert "under `images/" in (directory / "DATASHEET.md").read_text()


def test_copied_images_and_webdataset_are_not_offered_together(project, client, manager):
    with pytest.raises(ValueError, match="not both"):
        services.release_options(project=project, formats=["webdataset"], copy_images=True)
    # Asked for copies without naming formats: every format whose files do not hold images.
    chosen = services.release_options(project=project, copy_images=True)
    assert chosen.formats == ("jsonl", "csv", "parquet", "coco") and chosen.copy_images
    client.force_login(manager)
    refused = client.post(
        reverse("api-releases", args=[project.slug]),
        {"formats": ["jsonl", "webdataset"], "copy_images": True},
        content_type="application/json",
    )
    assert refused.status_code == 400 and "not both" in refused.json()["detail"]
    page = client.post(
        reverse("releases", args=[project.slug]),
        {
            "formats": ["jsonl", "webdataset"],
            "copy_images": "on",
            "balance_method": "none",
            "balance_ratio": "1",
        },
    )
    assert page.status_code == 200 and b"not both" in page.content
    assert not Release.objects.filter(project=project).exists()


def test_rebuild_is_byte_identical_and_ready_is_left_alone(project, manager, releases_root):
    _dataset(project)
    release = _cut(project, manager, formats=["jsonl", "csv", "coco", "webdataset"])
    directory = releases_root / release.directory
    first = _files(directory)
    assert "DATASHEET.md" in first and "manifest.json" in first and "diff.jsonl" in first

    # Building a ready release does nothing.
    again = services.release_build(release_id=release.pk)
    assert again.finished_at == release.finished_at
    assert _files(directory) == first

    # A rebuild of the same snapshot writes the same bytes, over what a crashed build left.
    default_storage_releases = storages["releases"]
    default_storage_releases.delete(f"{release.directory}/pairs.csv")
    default_storage_releases.save(f"{release.directory}/stray.tmp", ContentFile(b"left over"))
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.FAILED, directory="")
    rebuilt = services.release_build(release_id=release.pk)
    assert rebuilt.status == ReleaseStatus.READY
    assert _files(releases_root / rebuilt.directory) == first


def _distinct_cluster_splits(project, a, b):
    """Pick a salt that puts the clusters of a and b into different splits."""
    for attempt in range(200):
        salt = f"salt-{attempt}"
        if split_for_cluster(canonical_id=a.pk, salt=salt) != split_for_cluster(
            canonical_id=b.pk, salt=salt
        ):
            project.split_salt = salt
            project.save(update_fields=["split_salt"])
            return
    raise AssertionError("no salt separates the clusters")


def test_merged_clusters_never_leak_and_moves_are_reported(project, manager, tmp_path):
    data = _dataset(project)
    a, a2, b, b2 = data["images"][6:10]
    _cluster(a, a2)
    second = _cluster(b, b2)
    _distinct_cluster_splits(project, a, b)
    v1 = _cut(project, manager, formats=["jsonl"])
    splits_v1 = dict(ImageSplit.objects.filter(release=v1).values_list("image_id", "split"))
    assert splits_v1[a.pk] == splits_v1[a2.pk] != splits_v1[b.pk] == splits_v1[b2.pk]

    # Dedup merges the two clusters around a.
    second.delete()
    merged = DuplicateCluster.objects.get(canonical=a)
    for image in (b, b2):
        ClusterMember.objects.create(cluster=merged, image=image)
    v2 = _cut(project, manager, formats=["jsonl"])
    assert v2.status == ReleaseStatus.READY and v2.version == 2
    splits_v2 = dict(ImageSplit.objects.filter(release=v2).values_list("image_id", "split"))
    assert len({splits_v2[i.pk] for i in (a, a2, b, b2)}) == 1
    order = ("test", "val", "train")
    assert splits_v2[a.pk] == min(splits_v1[a.pk], splits_v1[b.pk], key=order.index)
    assert v2.counts["moves"] == 2 and v2.counts["merged_clusters"] == 1
    # Every other image kept its split.
    for image_id, split in splits_v1.items():
        if image_id not in (a.pk, a2.pk, b.pk, b2.pk):
            assert splits_v2[image_id] == split

    directory = _download(v2, tmp_path)
    frame = pd.read_parquet(directory / "pairs.parquet")
    assert frame.groupby("cluster_id")["split"].nunique().max() == 1
    assert b.pk not in set(frame["image_id"])  # now a duplicate, held back
    assert v2.counts["diff"]["removed"] >= 1
    diff = (directory / "diff.jsonl").read_text().splitlines()
    assert any(json.loads(line)["change"] == "removed" for line in diff)


def test_failed_build_leaves_nothing(project, manager, releases_root, monkeypatch, settings):
    _dataset(project)

    def broken(**kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(services, "release_image_read", broken)
    release = _cut(project, manager, formats=["jsonl", "webdataset"])
    assert release.status == ReleaseStatus.FAILED
    assert "disk on fire" in release.error
    assert release.directory == ""
    assert not (releases_root / project.slug / release.name).exists()
    assert list(Path(settings.CONCORD_SCRATCH_DIR, "builds").iterdir()) == []
    assert not ImageSplit.objects.filter(release=release).exists()


def test_options_are_checked(project):
    with pytest.raises(ValueError, match="Unknown format"):
        services.release_options(project=project, formats=["tiff"])
    chosen = services.release_options(project=project, formats=["jsonl"], balance_method="none")
    assert chosen.formats == ("jsonl", "parquet")


@pytest.mark.parametrize("who, status", [("annotator", 403), ("outsider", 404)])
def test_only_managers_see_releases(client, project, manager, annotator, outsider, who, status):
    _dataset(project, count=4)
    release = _cut(project, manager, formats=["jsonl"])
    user = {"annotator": annotator, "outsider": outsider}[who]
    client.force_login(user)
    urls = [
        reverse("releases", args=[project.slug]),
        reverse("release-detail", args=[project.slug, release.version]),
        reverse("release-file", args=[project.slug, release.version, "DATASHEET.md"]),
        reverse("api-releases", args=[project.slug]),
        reverse("api-release", args=[project.slug, release.version]),
        reverse("api-release-file", args=[project.slug, release.version, "DATASHEET.md"]),
    ]
    for url in urls:
        assert client.get(url).status_code == status, url
    assert client.post(reverse("releases", args=[project.slug])).status_code == status


def test_manager_pages_and_api(client, project, manager, django_capture_on_commit_callbacks):
    _dataset(project, count=4)
    client.force_login(manager)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("releases", args=[project.slug]),
            {"formats": ["jsonl", "coco"], "balance_method": "none", "balance_ratio": "1"},
        )
    assert response.status_code == 302
    assert len(callbacks) == 1
    release = Release.objects.get(project=project)
    page = client.get(reverse("releases", args=[project.slug]))
    assert b"v1" in page.content and b"queued" in page.content.lower()
    release = services.release_build(release_id=release.pk)
    detail = client.get(reverse("release-detail", args=[project.slug, 1]))
    assert b"Datasheet" in detail.content and b"pairs.jsonl" in detail.content
    download = client.get(reverse("release-file", args=[project.slug, 1, "pairs.jsonl"]))
    assert download.status_code == 200 and download.streaming
    body = b"".join(download.streaming_content)
    assert body == storages["releases"].open(f"{release.directory}/pairs.jsonl").read()
    assert client.get(reverse("release-file", args=[project.slug, 1, "../x"])).status_code == 404

    listing = client.get(reverse("api-releases", args=[project.slug])).json()
    assert listing["results"][0]["version"] == 1
    api_detail = client.get(reverse("api-release", args=[project.slug, 1])).json()
    assert api_detail["status"] == "ready"
    assert {f["path"] for f in api_detail["files"]} >= {"pairs.jsonl", "manifest.json"}
    with django_capture_on_commit_callbacks():
        created = client.post(
            reverse("api-releases", args=[project.slug]),
            {"formats": ["jsonl"], "copy_images": False},
            content_type="application/json",
        )
    assert created.status_code == 201 and created.json()["version"] == 2
    bad = client.post(
        reverse("api-releases", args=[project.slug]),
        {"formats": ["tiff"]},
        content_type="application/json",
    )
    assert bad.status_code == 400
    api_file = client.get(reverse("api-release-file", args=[project.slug, 1, "DATASHEET.md"]))
    assert api_file.status_code == 200 and api_file.streaming
