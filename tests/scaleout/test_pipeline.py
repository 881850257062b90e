"""The whole pipeline scaled out: upload → dedup → tasks → a simulated crowd → release →
download through the web → train → mine, with a default-queue worker and a training worker each
in its own empty folder, sharing only PostgreSQL, Redis and an S3 server. Every file a step needs
comes from storage: the downloads are checked against the release's manifest, each worker's var/
is emptied (or the worker replaced) between steps, and a second release built by a worker that
never saw the first diffs against it correctly."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest
from django.core.files.storage import storages
from django.urls import reverse

from annotate.models import Task, TaskKind
from annotate.simulation.services import crowd_simulate
from datasets.models import ClusterMember, DuplicateCluster, Image, Release, ReleaseStatus, Role
from datasets.releases.diff import diff_counts, read_pair_states
from datasets.releases.exporters import verify_manifest
from datasets.releases.splits import split_for_cluster
from tests import factories
from tests.datasets.curation.dedup_images import jpeg, picture, resized
from tests.s3 import s3_client
from tests.scaleout.conftest import wait_for, wipe
from training.negatives.models import Proposal, ProposalSource
from training.registry.models import ModelVersion, VersionStatus

PHOTOS = 16
CAPTIONS = ("a picture numbered {n}", "shapes over a gradient, number {n}")


def _salt_with_every_split(project) -> None:
    """Sixteen photos in 70/10/20 leave validation empty about one run in five (ids differ from
    run to run), and a model without validation figures is never promoted, so nothing would be
    mined: pick the first split salt that puts at least two canonical images in each split."""
    canonical = DuplicateCluster.objects.filter(project=project).values_list(
        "canonical_id", flat=True
    )
    singles = Image.objects.filter(project=project, cluster_membership__isnull=True)
    image_ids = [*canonical, *singles.values_list("pk", flat=True)]
    for attempt in range(1000):
        salt = f"scaleout-{attempt}"
        counts = Counter(split_for_cluster(canonical_id=pk, salt=salt) for pk in image_ids)
        if min(counts[split] for split in ("train", "val", "test")) >= 2:
            project.split_salt = salt
            project.save(update_fields=["split_salt"])
            return
    raise AssertionError("no salt puts two images in every split")


def _download(client, url: str) -> bytes:
    """A release file as a browser gets it: the web answers with a redirect to a signed S3 URL,
    and the bytes come from S3, not from the web tier."""
    response = client.get(url)
    assert response.status_code == 302, (url, response.status_code)
    location = response["Location"]
    assert location.startswith(s3_client().meta.endpoint_url), location
    with urllib.request.urlopen(location, timeout=30) as fetched:
        return fetched.read()


def _download_release(client, project, version: int, target: Path) -> dict:
    """Every file of a release through the API's links, each checked against the manifest."""
    detail = client.get(reverse("api-release", args=[project.slug, version])).json()
    assert detail["status"] == "ready", detail
    listed = {f["path"]: f for f in detail["files"]}
    for path, entry in listed.items():
        data = _download(client, entry["url"])
        assert len(data) == entry["size"], path
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], path
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_bytes(data)
    assert verify_manifest(directory=target) == []
    manifest = json.loads((target / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} | {"manifest.json"} == set(listed)
    return manifest


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_runs_on_workers_that_share_only_database_broker_and_storage(
    stack, start_worker, client, tmp_path
):
    manager = factories.user("manager")
    client.force_login(manager)
    project = factories.project(manager=manager, name="Scaled out")
    project.mining_margin = 2.0  # the tiny model's scores say little: no cap
    project.negatives_model_per_image = 2
    project.judgments_per_item = 2
    project.save()
    default = start_worker("default-a", "ingest,default,agreement")
    training = start_worker("training", "training")
    workers = [default, training]

    # Upload through the API: distinct pictures, one resized copy (a near duplicate) and one
    # repeat of the same bytes (merged into its image). The files are stored in S3 and the
    # default worker runs the import job.
    files = [(f"photo-{n}.jpg", jpeg(picture(seed=n))) for n in range(PHOTOS)]
    files.append(("photo-0-small.jpg", jpeg(resized(picture(seed=0)))))
    files.append(("photo-1-again.jpg", files[1][1]))
    upload = client.post(
        reverse("api-images", args=[project.slug]),
        {"files": [_named(name, data) for name, data in files]},
    )
    assert upload.status_code == 202
    job = upload.json()
    wait_for("the import job", lambda: client.get(job["url"]).json()["status"] == "done", workers)
    outcomes = [row["outcome"] for row in client.get(job["rows_url"]).json()["results"]]
    assert outcomes.count("added") == PHOTOS + 1 and outcomes[-1] == "merged"
    for image in Image.objects.filter(project=project):
        client.post(
            reverse("api-captions", args=[project.slug]),
            {"image": image.pk, "text": CAPTIONS[0].format(n=image.pk)},
            content_type="application/json",
        )
        client.post(
            reverse("api-captions", args=[project.slug]),
            {"image": image.pk, "text": CAPTIONS[1].format(n=image.pk)},
            content_type="application/json",
        )

    # Dedup and thumbnails on the default worker, reading the images from S3.
    images = Image.objects.filter(project=project)
    wait_for(
        "hashes and thumbnails",
        lambda: (
            images.filter(hashed_at__isnull=True).count() == 0
            and images.filter(thumbnail="").count() == 0
        ),
        workers,
    )
    small = images.get(original_name="photo-0-small.jpg")
    original = images.get(original_name="photo-0.jpg")
    assert (
        ClusterMember.objects.get(image=small).cluster_id
        == ClusterMember.objects.get(image=original).cluster_id
    )
    bucket_keys = _keys(stack["bucket"])
    assert all(image.file.name in bucket_keys for image in images)
    wipe(default)
    _salt_with_every_split(project)

    # Tasks, opened by the worker, then a simulated crowd through the real queue.
    assert client.post(reverse("tasks-open", args=[project.slug])).status_code == 302
    wait_for("tasks", lambda: Task.objects.filter(project=project).exists(), workers)
    for n in range(4):
        factories.member(project=project, user=factories.user(f"crowd{n}"), role=Role.ANNOTATOR)
    report = crowd_simulate(project=project, annotators=4, spammer_fraction=0.0, seed=7)
    assert report.judgments > 0 and report.dawid_skene_accuracy > 0.8

    # Release v1: built by the default worker, stored in S3, downloaded through the web.
    cut = client.post(
        reverse("api-releases", args=[project.slug]), {}, content_type="application/json"
    )
    assert cut.status_code == 201
    v1 = Release.objects.get(project=project, version=1)
    wait_for("release v1", lambda: _status(v1) in ("ready", "failed"), workers)
    v1.refresh_from_db()
    assert v1.status == ReleaseStatus.READY, v1.error
    v1_files = _download_release(client, project, 1, tmp_path / "v1")
    assert v1_files["release"]["images"] == "in webdataset shards"
    assert not (tmp_path / "v1" / "images").exists()
    assert any(k.startswith(f"releases/{v1.directory}/") for k in _keys(stack["bucket"]))
    page = client.get(reverse("release-file", args=[project.slug, 1, "DATASHEET.md"]))
    assert page.status_code == 302
    assert not [f for f in default.files() if not f.startswith(("scratch/", "static/"))]
    wipe(default)

    # Train on the training worker (empty var/): the release, its images and the checkpoint
    # all through S3. The promotion starts mining there, reading images from S3 too.
    assert client.post(reverse("models", args=[project.slug])).status_code == 302
    version = ModelVersion.objects.get(project=project)
    wait_for(
        "training", lambda: _version_status(version) in ("ready", "failed"), workers, timeout=300
    )
    version.refresh_from_db()
    assert version.status == VersionStatus.READY, version.error
    assert version.is_promoted, (version.metrics, version.metric_value)
    stored = _keys(stack["bucket"])
    assert f"models/{version.checkpoint}" in stored
    for name in ("last.pt", "metrics.json", "log.jsonl"):
        assert f"models/{project.slug}/{version.pk}/{name}" in stored
    checkpoint = storages["models"].open(version.checkpoint).read()
    assert hashlib.sha256(checkpoint).hexdigest() == version.checkpoint_sha256

    mined = Proposal.objects.filter(project=project, source=ProposalSource.MODEL)
    wait_for(
        "model mining and its challenge items",
        lambda: (
            mined.exists()
            and not Proposal.objects.filter(project=project, score__isnull=True).exists()
            and Task.objects.filter(project=project, kind=TaskKind.CHALLENGE).exists()
        ),
        workers,
        timeout=300,
    )
    assert all(p.model_version_id == version.pk for p in mined)
    # What the training worker kept is its scratch cache (fetched copies named by content
    # hash), no checkpoint or release of its own.
    kept = training.files()
    assert kept, "the training worker fetched nothing?"
    assert not [f for f in kept if not f.startswith(("scratch/objects/", "scratch/releases/"))], (
        kept
    )

    # The crowd answers the challenges; release v2 is built by a new worker that never saw v1,
    # after the first one is gone: its diff reads v1 from S3 and agrees with the files.
    crowd_simulate(
        project=project, annotators=4, spammer_fraction=0.0, seed=8, challenges_only=True
    )
    default.stop()
    other = start_worker("default-b", "ingest,default")
    workers = [other, training]
    client.post(
        reverse("api-releases", args=[project.slug]),
        {"formats": ["jsonl", "parquet"]},
        content_type="application/json",
    )
    v2 = Release.objects.get(project=project, version=2)
    wait_for("release v2", lambda: _status(v2) in ("ready", "failed"), workers)
    v2.refresh_from_db()
    assert v2.status == ReleaseStatus.READY, v2.error
    _download_release(client, project, 2, tmp_path / "v2")
    expected = diff_counts(
        old=read_pair_states(path=tmp_path / "v1" / "pairs.parquet"),
        new=read_pair_states(path=tmp_path / "v2" / "pairs.parquet"),
    )
    assert v2.counts["previous_version"] == "v1"
    assert v2.counts["diff"] == asdict(expected)
    assert 0 < v2.counts["diff"]["added"] < v2.counts["pairs"]
    assert "Changes since v1" in (tmp_path / "v2" / "DATASHEET.md").read_text()


def _named(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/jpeg")


def _keys(bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def _status(release: Release) -> str:
    return Release.objects.filter(pk=release.pk).values_list("status", flat=True).get()


def _version_status(version: ModelVersion) -> str:
    return ModelVersion.objects.filter(pk=version.pk).values_list("status", flat=True).get()
