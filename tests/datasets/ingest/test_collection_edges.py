"""The collection's edges: the API, the pages and the command, over the same services."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from datasets.ingest.fetching import HostGate, RedisHostGate
from datasets.ingest.services import collection
from datasets.models import (
    CollectItem,
    FetchState,
    Image,
    ImageSource,
    ImportJob,
    ImportKind,
    ImportRow,
    ImportStatus,
    RowOutcome,
)
from tests.datasets.ingest.test_collection import collect_settings, server  # noqa: F401 (fixtures)
from tests.datasets.ingest.test_fetching import tls  # noqa: F401 (a fixture)


def _manifest(server) -> bytes:  # noqa: F811
    return (
        "url,caption\n"
        f"{server.url('/img/1.jpg')},one\n"
        f"{server.url('/img/2.jpg')},two\n"
        f"{server.url('/missing.jpg')},gone\n"
    ).encode()


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_api_creates_shows_pauses_and_resumes_a_collection(project, manager, server):  # noqa: F811
    client = _logged_in(manager)
    url = reverse("api-collections", kwargs={"slug": project.slug})
    response = client.post(
        url, {"manifest": SimpleUploadedFile("urls.csv", _manifest(server))}, format="multipart"
    )
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.kind == ImportKind.COLLECT
    collection.collection_stage(job_id=job.pk)
    detail = client.get(response["Location"]).json()
    assert detail["progress"]["pending"] == 3 and detail["progress"]["total"] == 3

    route = {"slug": project.slug, "job_id": job.pk}
    assert client.post(reverse("api-collection-pause", kwargs=route)).json()["status"] == "paused"
    assert client.post(reverse("api-collection-pause", kwargs=route)).status_code == 409
    assert client.post(reverse("api-collection-resume", kwargs=route)).json()["status"] == "running"
    collection.collection_run(job_id=job.pk, seconds=0)
    detail = client.get(reverse("api-collection", kwargs=route)).json()
    assert detail["status"] == "done"
    assert detail["progress"]["fetched"] == 2 and detail["progress"]["failed"] == 1
    assert detail["progress"]["failures"] == [
        {"code": "http_status", "label": "HTTP error status", "count": 1}
    ]
    retried = client.post(reverse("api-collection-retry", kwargs=route)).json()
    assert retried["progress"]["pending"] == 1


@pytest.mark.django_db
def test_the_api_refuses_a_bad_manifest_and_actions_on_other_jobs(project, manager):
    client = _logged_in(manager)
    url = reverse("api-collections", kwargs={"slug": project.slug})
    bad = client.post(url, {"manifest": SimpleUploadedFile("urls.xlsx", b"x")})
    assert bad.status_code == 400 and "must end in" in bad.json()["manifest"][0]
    assert client.post(url, {}).status_code == 400
    other = ImportJob.objects.create(project=project, kind=ImportKind.UPLOAD, source="upload")
    route = {"slug": project.slug, "job_id": other.pk}
    assert client.post(reverse("api-collection-pause", kwargs=route)).status_code == 409


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"bucket": "x\x01"}, "bucket"),
        ({"bucket": "a"}, "bucket"),
        ({"bucket": "my bucket"}, "bucket"),
        ({"bucket": "photos", "prefix": "cats/\x07"}, "prefix"),
        ({"bucket": "photos", "captions_key": "c\x1b.csv"}, "captions_key"),
        ({"manifest": "urls.csv", "url_column": "u\x01rl"}, "url_column"),
        ({"manifest": "urls.csv", "caption_column": "\x7f"}, "caption_column"),
    ],
)
def test_bad_collection_fields_are_refused_at_once_naming_the_field(
    project, manager, fields, field
):
    """Found out when asked, not later by a worker with a boto3 error as the job's reason; no job
    is made."""
    client = _logged_in(manager)
    data = dict(fields)
    if "manifest" in data:
        data["manifest"] = SimpleUploadedFile(data["manifest"], b"url,caption\n")
    response = client.post(reverse("api-collections", kwargs={"slug": project.slug}), data)
    assert response.status_code == 400 and field in response.json(), response.content
    page = client.post(reverse("project-collect", kwargs={"slug": project.slug}), data)
    assert page.status_code == 200 and field in page.context["form"].errors
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"manifest": "urls.csv", "bucket": "qa-bucket", "prefix": "set/"}, "Send either"),
        ({}, "Send either"),
        ({"prefix": "set/"}, "Send either"),
        ({"manifest": "urls.csv", "captions_key": "caps/m.csv"}, "'captions_key' only apply"),
        ({"manifest": "urls.csv", "prefix": "set/"}, "'prefix' only apply"),
    ],
)
def test_sources_that_do_not_fit_together_get_the_same_words_on_the_page_and_in_the_api(
    project, manager, fields, words
):
    client = _logged_in(manager)

    def data():
        sent = {"url_column": "url", "caption_column": "caption", **fields}
        if "manifest" in sent:
            sent["manifest"] = SimpleUploadedFile(sent["manifest"], b"url,caption\n")
        return sent

    response = client.post(reverse("api-collections", kwargs={"slug": project.slug}), data())
    assert response.status_code == 400, response.content
    said = response.json()["non_field_errors"][0]
    assert words in said
    page = client.post(reverse("project-collect", kwargs={"slug": project.slug}), data())
    assert page.status_code == 200
    assert page.context["form"].non_field_errors() == [said]
    assert f'<p class="error" data-form-error>{escape(said)}</p>' in page.content.decode()
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_the_pages_start_a_collection_and_show_its_failures(project, manager, server):  # noqa: F811
    client = _logged_in(manager)
    page = client.get(reverse("project-collect", kwargs={"slug": project.slug}))
    assert page.status_code == 200 and b"Collect images from URLs" in page.content
    response = client.post(
        reverse("project-collect", kwargs={"slug": project.slug}),
        {
            "manifest": SimpleUploadedFile("urls.csv", _manifest(server)),
            "url_column": "url",
            "caption_column": "caption",
        },
    )
    assert response.status_code == 302
    job = ImportJob.objects.get(project=project, kind=ImportKind.COLLECT)
    collection.collection_stage(job_id=job.pk)
    pause = reverse("collection-pause", kwargs={"slug": project.slug, "job_id": job.pk})
    assert client.post(pause).status_code == 302
    job.refresh_from_db()
    assert job.status == ImportStatus.PAUSED
    resume = reverse("collection-resume", kwargs={"slug": project.slug, "job_id": job.pk})
    client.post(resume)
    collection.collection_run(job_id=job.pk, seconds=0)
    page = client.get(response["Location"])
    assert b'data-failure="http_status"' in page.content
    assert b"Retry failed rows" in page.content


@pytest.mark.django_db
def test_the_command_collects_here(project, server, tmp_path, capsys):  # noqa: F811
    manifest = tmp_path / "urls.csv"
    manifest.write_bytes(_manifest(server))
    with pytest.raises(SystemExit) as exited:  # a failed row: exit status 1, like the importers
        call_command("collect_urls", project.slug, str(manifest), "--here")
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "2 fetched" in out and "1 failed" in out and "HTTP error status: 1" in out
    # Each failed row by the name the page and the API use, as the README says.
    assert "  row 3: Not fetched (HTTP error status): HTTP 404" in out
    job = ImportJob.objects.get(project=project, kind=ImportKind.COLLECT)
    assert not job.collect_items.filter(state=FetchState.PENDING).exists()


@pytest.mark.django_db
def test_the_command_lists_the_first_20_failed_rows_then_how_many_more(
    project,
    server,  # noqa: F811
    tmp_path,
    capsys,
):
    manifest = tmp_path / "urls.csv"
    rows = [f"{server.url(f'/missing-{n}.jpg')},gone" for n in range(23)]
    manifest.write_text("url,caption\n" + "\n".join(rows) + "\n")
    with pytest.raises(SystemExit):
        call_command("collect_urls", project.slug, str(manifest), "--here")
    out = capsys.readouterr().out
    assert "  row 1: Not fetched" in out and "  row 20: Not fetched" in out
    assert "row 21:" not in out and "  … and 3 more" in out


def _numbering_manifests(server) -> dict[str, bytes]:  # noqa: F811
    """Data row 1 fetched, 2 refused by the reader (no URL), 3 refused by the fetch (404), 4
    fetched: the text formats with blank lines and a caption over two lines in between, so a
    line number and a row number differ."""
    good, missing, other = (
        server.url("/img/1.jpg"),
        server.url("/missing.jpg"),
        server.url("/img/2.jpg"),
    )
    csv = f'url,caption\n{good},"one\nover two lines"\n\n,no url\n{missing},gone\n\n{other},four\n'
    jsonl = (
        f'{{"url": "{good}", "caption": "one"}}\n\n{{"caption": "no url"}}\n'
        f'{{"url": "{missing}", "caption": "gone"}}\n\n{{"url": "{other}", "caption": "four"}}\n'
    )
    table = pa.table(
        {"url": [good, None, missing, other], "caption": ["one", "no url", "gone", "four"]}
    )
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    return {
        "csv": csv.encode(),
        "tsv": csv.replace(",", "\t").encode(),
        "jsonl": jsonl.encode(),
        "parquet": parquet.getvalue(),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_rows_are_named_row_n_by_data_row_in_every_format_and_every_place(
    project,
    manager,
    server,  # noqa: F811
    suffix,
):
    client = _logged_in(manager)
    body = _numbering_manifests(server)[suffix]
    response = client.post(
        reverse("api-collections", kwargs={"slug": project.slug}),
        {"manifest": SimpleUploadedFile(f"urls.{suffix}", body)},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    collection.collection_stage(job_id=job_id)
    collection.collection_run(job_id=job_id, seconds=0)

    where = dict(ImportRow.objects.filter(job_id=job_id).values_list("position", "where"))
    assert where == {0: "row 1", 1: "row 2", 2: "row 3", 3: "row 4"}
    outcomes = dict(ImportRow.objects.filter(job_id=job_id).values_list("where", "outcome"))
    assert outcomes["row 2"] == outcomes["row 3"] == RowOutcome.REFUSED
    assert outcomes["row 1"] != RowOutcome.REFUSED and outcomes["row 4"] != RowOutcome.REFUSED

    route = {"slug": project.slug, "job_id": job_id}
    rows = client.get(reverse("api-import-rows", kwargs=route)).json()
    rows = rows.get("results", rows)
    assert sorted(row["where"] for row in rows) == ["row 1", "row 2", "row 3", "row 4"]
    page = client.get(reverse("import-job", kwargs=route)).content.decode()
    assert "row 2" in page and "row 3" in page and "line " not in page


@pytest.mark.django_db
def test_credentials_in_urls_fetch_the_image_and_are_shown_or_kept_nowhere(
    project,
    manager,
    server,  # noqa: F811
):
    port = server.port
    secrets = ("alice", "s3cr", "hunter2", "carol", "bob-token")
    body = (
        "url,caption,license_url\n"
        f"http://alice:s3cr%3Aet@127.0.0.1:{port}/private.jpg,with a password,\n"
        f"http://alice@127.0.0.1:{port}/img/5.jpg,user only,http://alice:s3cr@l.example/\n"
        f"{server.url('/credentials-loop')},a Location with credentials,\n"
        f"ftp://carol:hunter2@127.0.0.1/x.jpg,refused by the reader,\n"
        f"http://127.0.0.1:{port}/img/6.jpg?token=bob-token&w=1,a token,\n"
    ).encode()
    client = _logged_in(manager)
    response = client.post(
        reverse("api-collections", kwargs={"slug": project.slug}),
        {"manifest": SimpleUploadedFile("urls.csv", body)},
        format="multipart",
    )
    job_id = response.json()["id"]
    collection.collection_stage(job_id=job_id)
    collection.collection_run(job_id=job_id, seconds=0)

    rows = {row.where: row for row in ImportRow.objects.filter(job_id=job_id)}
    assert rows["row 1"].outcome != RowOutcome.REFUSED  # fetched with the credentials
    assert rows["row 2"].outcome != RowOutcome.REFUSED
    assert rows["row 3"].outcome == rows["row 4"].outcome == RowOutcome.REFUSED
    assert rows["row 1"].name == f"http://***@127.0.0.1:{port}/private.jpg"
    assert rows["row 5"].name == f"http://127.0.0.1:{port}/img/6.jpg?token=***&w=1"
    # Only the row used for fetching keeps the URL as written.
    assert CollectItem.objects.get(job_id=job_id, position=0).url.startswith("http://alice:")

    stored = [
        *ImportRow.objects.filter(job_id=job_id).values_list("name", "reason"),
        *Image.objects.filter(project=project).values_list("source_url", "license_url"),
        *ImageSource.objects.filter(image__project=project).values_list(
            "source_url", "license_url"
        ),
    ]
    assert not [value for value in map(str, stored) if any(s in value for s in secrets)]
    route = {"slug": project.slug, "job_id": job_id}
    shown = [
        client.get(reverse("api-import-rows", kwargs=route)).content.decode(),
        client.get(reverse("api-collection", kwargs=route)).content.decode(),
        client.get(reverse("import-job", kwargs=route)).content.decode(),
        *(
            client.get(reverse("image-detail", args=[project.slug, image.pk])).content.decode()
            for image in Image.objects.filter(project=project)
        ),
    ]
    assert "***@127.0.0.1" in shown[0]
    assert not [page for page in shown if any(s in page for s in secrets)]


@pytest.mark.django_db
def test_an_https_collection_trusts_the_ca_the_setting_names(project, manager, settings, tls):  # noqa: F811
    url = f"https://localhost:{tls['good'].port}/photo.png"
    body = f"url,caption\n{url},over TLS\n".encode()

    def collected() -> ImportRow:
        job = collection.collection_job_create(
            project=project, manifest=SimpleUploadedFile("urls.csv", body), created_by=manager
        )
        collection.collection_stage(job_id=job.pk)
        collection.collection_run(job_id=job.pk, seconds=0)
        return ImportRow.objects.get(job=job)

    refused = collected()
    assert refused.outcome == RowOutcome.REFUSED
    assert "TLS certificate refused for localhost" in refused.reason
    settings.CONCORD_COLLECT_CA_BUNDLE = tls["bundle"]
    assert collected().outcome != RowOutcome.REFUSED


def test_the_per_host_limits_are_shared_in_redis_when_the_broker_is_redis(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/6"
    gate = collection.host_gate(per_host=3, per_second=2)
    assert isinstance(gate, RedisHostGate) and gate.per_host == 3
    settings.CELERY_BROKER_URL = "filesystem://localhost/"
    gate = collection.host_gate(per_host=3, per_second=2)
    assert type(gate) is HostGate
