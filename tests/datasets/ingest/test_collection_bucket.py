"""Importing every image under an S3 prefix, from moto's S3 server (real HTTP, real boto3):
captions from sidecar .txt files or from a manifest in the bucket; every object one outcome."""

import pytest

from datasets.ingest.services import collection
from datasets.models import FetchFailure, FetchState, Image, ImportKind, ImportStatus, Source
from tests import factories
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, moto_endpoint, new_bucket, s3_client


@pytest.fixture(autouse=True)
def bucket_settings(settings, monkeypatch):
    settings.CONCORD_COLLECT_S3_ENDPOINT = moto_endpoint()
    settings.CONCORD_COLLECT_S3_REGION = REGION
    settings.CONCORD_COLLECT_S3_ACCESS_KEY = ACCESS_KEY
    settings.CONCORD_COLLECT_S3_SECRET_KEY = SECRET_KEY
    settings.CONCORD_COLLECT_BACKOFF = 0.0
    monkeypatch.setattr(collection, "_S3", None)


def _run(job) -> str:
    job = collection.collection_stage(job_id=job.pk)
    assert job.status == ImportStatus.RUNNING, job.error
    with collection.Fetcher(policy=collection.fetch_policy()) as fetcher:
        return collection.collection_run(job_id=job.pk, seconds=0, fetcher=fetcher)


@pytest.mark.django_db
def test_every_image_under_a_prefix_with_sidecar_captions(manager):
    bucket, client = new_bucket(), s3_client()
    for n in range(3):
        client.put_object(
            Bucket=bucket, Key=f"set/a/{n}.jpg", Body=factories.image_bytes(seed=300 + n)
        )
    client.put_object(Bucket=bucket, Key="set/a/0.txt", Body=b"a red square\n")
    client.put_object(Bucket=bucket, Key="set/a/broken.png", Body=b"\x89PNG\r\n\x1a\n" + b"0" * 50)
    client.put_object(Bucket=bucket, Key="set/a/notes.md", Body=b"not listed")
    client.put_object(Bucket=bucket, Key="other/x.jpg", Body=factories.image_bytes(seed=9))
    project = factories.project(manager=manager, name="Bucket")
    job = collection.bucket_job_create(
        project=project, bucket=bucket, prefix="set/", created_by=manager
    )
    assert job.kind == ImportKind.BUCKET
    assert _run(job) == "done"
    job.refresh_from_db()
    assert (job.rows_total, job.added, job.refused) == (4, 3, 1)
    images = Image.objects.filter(project=project).order_by("original_name")
    assert [i.original_name for i in images] == ["0.jpg", "1.jpg", "2.jpg"]
    assert images[0].source == Source.BUCKET
    assert images[0].source_url == f"s3://{bucket}/set/a/0.jpg"
    assert list(images[0].captions.values_list("text", flat=True)) == ["a red square"]
    assert not images[1].captions.exists()
    broken = job.collect_items.get(url__endswith="broken.png")
    assert (broken.state, broken.failure) == (FetchState.FAILED, FetchFailure.REJECTED)


@pytest.mark.django_db
def test_captions_from_a_manifest_in_the_bucket_and_a_missing_object(manager):
    bucket, client = new_bucket(), s3_client()
    client.put_object(Bucket=bucket, Key="p/one.png", Body=factories.image_bytes(fmt="PNG", seed=1))
    client.put_object(Bucket=bucket, Key="p/two.jpg", Body=factories.image_bytes(seed=2))
    manifest = "key,caption,author\none.png,first,Ann\ntwo.jpg,second,Bo\nthree.jpg,gone,Cy\n../x.jpg,up,Di\n"
    client.put_object(Bucket=bucket, Key="p/captions.csv", Body=manifest.encode())
    project = factories.project(manager=manager, name="Bucket manifest")
    job = collection.bucket_job_create(
        project=project,
        bucket=bucket,
        prefix="p/",
        created_by=manager,
        captions_key="p/captions.csv",
    )
    assert _run(job) == "done"
    job.refresh_from_db()
    assert (job.rows_total, job.added, job.refused) == (4, 2, 2)
    failures = dict(job.collect_items.values_list("position", "failure"))
    assert failures == {0: "", 1: "", 2: FetchFailure.HTTP_STATUS, 3: FetchFailure.INVALID}
    assert "404" in job.rows.get(position=2).reason
    texts = sorted(Image.objects.filter(project=project).values_list("captions__text", flat=True))
    assert texts == ["first", "second"]
    assert job.collect_items.get(position=0).extra == {"author": "Ann"}


@pytest.mark.django_db
def test_a_missing_bucket_fails_the_job_with_the_reason(manager):
    project = factories.project(manager=manager, name="No bucket")
    job = collection.bucket_job_create(
        project=project, bucket="no-such-bucket-here", prefix="", created_by=manager
    )
    job = collection.collection_stage(job_id=job.pk)
    assert job.status == ImportStatus.FAILED and "Could not list" in job.error


@pytest.mark.django_db
def test_a_bucket_through_the_api_and_the_command(manager, project, capsys):
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    bucket, client = new_bucket(), s3_client()
    client.put_object(Bucket=bucket, Key="in/a.jpg", Body=factories.image_bytes(seed=41))
    web = Client()
    web.force_login(manager)
    url = reverse("api-collections", kwargs={"slug": project.slug})
    response = web.post(url, {"bucket": bucket, "prefix": "in/"})
    assert response.status_code == 202, response.content
    assert response.json()["kind"] == ImportKind.BUCKET
    from django.core.files.uploadedfile import SimpleUploadedFile

    manifest = SimpleUploadedFile("u.csv", b"url\nhttp://example.com/a.jpg\n")
    both = web.post(url, {"bucket": bucket, "manifest": manifest})
    assert both.status_code == 400
    call_command("collect_urls", project.slug, "--bucket", bucket, "--prefix", "in/", "--here")
    out = capsys.readouterr().out
    assert "1 fetched" in out


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["set", "set/", "/set/"])
@pytest.mark.parametrize("form", ["full", "relative"])
def test_a_captions_manifest_key_may_be_the_full_key_or_relative_to_the_prefix(
    manager, prefix, form
):
    """Never ``setset/a.jpg`` nor ``set/set/a.jpg`` (README: Collect, buckets)."""
    bucket, client = new_bucket(), s3_client()
    client.put_object(Bucket=bucket, Key="set/a.jpg", Body=factories.image_bytes(seed=41))
    client.put_object(Bucket=bucket, Key="set/sub/c.png", Body=factories.image_bytes(seed=42))
    keys = ["set/a.jpg", "set/sub/c.png"] if form == "full" else ["a.jpg", "sub/c.png"]
    manifest = f"key,caption\n{keys[0]},first\n{keys[1]},second\n"
    client.put_object(Bucket=bucket, Key="caps/m.csv", Body=manifest.encode())
    project = factories.project(manager=manager, name="Bucket keys")
    job = collection.bucket_job_create(
        project=project, bucket=bucket, prefix=prefix, created_by=manager, captions_key="caps/m.csv"
    )
    assert _run(job) == "done"
    job.refresh_from_db()
    assert (job.rows_total, job.added, job.refused) == (2, 2, 0), list(
        job.rows.values_list("name", "reason")
    )
    assert sorted(job.rows.values_list("name", flat=True)) == [
        f"s3://{bucket}/set/a.jpg",
        f"s3://{bucket}/set/sub/c.png",
    ]
    texts = sorted(Image.objects.filter(project=project).values_list("captions__text", flat=True))
    assert texts == ["first", "second"]


@pytest.mark.django_db
def test_a_sidecar_caption_that_is_not_utf8_refuses_its_row_like_a_manifest(manager):
    bucket, client = new_bucket(), s3_client()
    client.put_object(Bucket=bucket, Key="set/i.jpg", Body=factories.image_bytes(seed=51))
    client.put_object(Bucket=bucket, Key="set/i.txt", Body=b"\xff\xfe bad utf8")
    client.put_object(Bucket=bucket, Key="set/j.jpg", Body=factories.image_bytes(seed=52))
    client.put_object(Bucket=bucket, Key="set/j.txt", Body="\ufeffcaf\u00e9 ok\r\n".encode())
    project = factories.project(manager=manager, name="Bucket sidecars")
    job = collection.bucket_job_create(
        project=project, bucket=bucket, prefix="set/", created_by=manager
    )
    assert _run(job) == "done"
    job.refresh_from_db()
    assert (job.added, job.refused) == (1, 1)
    refused = job.rows.get(position=0)
    # The words a manifest row with the same bytes gets (sources.text_problem).
    assert refused.reason == "'caption' holds bytes that are not UTF-8 (0xFF)."
    assert job.collect_items.get(position=0).failure == FetchFailure.INVALID
    texts = list(Image.objects.filter(project=project).values_list("captions__text", flat=True))
    assert texts == ["café ok"]
