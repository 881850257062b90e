"""Collection jobs end to end against a real HTTP server on 127.0.0.1: each manifest row ends
fetched (through the normal ingest path) or failed with its reason; pause, resume and retry;
claims that never overlap; manifests read as a stream."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image as PILImage

from datasets.ingest.collection import read_url_manifest
from datasets.ingest.services import collection
from datasets.ingest.services.jobs import InputRefused
from datasets.models import (
    Caption,
    CollectItem,
    FetchFailure,
    FetchState,
    Image,
    ImportJob,
    ImportRow,
    ImportStatus,
    RowOutcome,
    Source,
)
from tests import factories
from tests.datasets.ingest.image_server import ImageServer, closed_port


@pytest.fixture(scope="module")
def server():
    running = ImageServer()
    yield running
    running.close()


@pytest.fixture(autouse=True)
def collect_settings(settings):
    settings.CONCORD_COLLECT_ALLOW_CIDRS = ["127.0.0.0/8"]
    settings.CONCORD_COLLECT_ALLOW_HOSTS = []
    # Generous for a loaded machine; /slow waits 5 s before its headers.
    settings.CONCORD_COLLECT_CONNECT_TIMEOUT = 2.0
    settings.CONCORD_COLLECT_READ_TIMEOUT = 2.0
    settings.CONCORD_COLLECT_TOTAL_TIMEOUT = 4.0
    settings.CONCORD_COLLECT_BACKOFF = 0.0
    settings.CONCORD_COLLECT_ATTEMPTS = 2
    settings.CONCORD_COLLECT_PER_HOST = 8
    settings.CONCORD_COLLECT_PER_HOST_RATE = 0
    settings.CONCORD_COLLECT_BATCH = 8
    settings.CONCORD_MAX_IMAGE_BYTES = 2 * 1024 * 1024  # /huge-streamed sends 4 MB
    return settings


def _fetcher():
    return collection.Fetcher(policy=collection.fetch_policy())


def _job(manager, body: bytes, name: str = "urls.csv", **columns) -> ImportJob:
    project = factories.project(manager=manager, name=f"Collect {name}")
    job = collection.collection_job_create(
        project=project, manifest=ContentFile(body, name=name), created_by=manager, **columns
    )
    return collection.collection_stage(job_id=job.pk)


def _run(job: ImportJob) -> str:
    with _fetcher() as fetcher:
        return collection.collection_run(job_id=job.pk, seconds=0, fetcher=fetcher)


def _csv(rows: list[tuple]) -> bytes:
    lines = ["url,caption,photographer"]
    lines += [",".join(row) for row in rows]
    return "\n".join(lines).encode()


@pytest.mark.django_db
def test_every_row_ends_fetched_or_failed_with_its_reason(manager, server):
    cases = [
        ("/exif.jpg", "a camera photo", RowOutcome.ADDED, ""),
        ("/good.png", "a png", RowOutcome.ADDED, ""),
        ("/same.jpg", "same bytes elsewhere", RowOutcome.MERGED, ""),
        ("/to-good", "redirected to the png", RowOutcome.MERGED, ""),
        ("/busy-once", "429 then fine", RowOutcome.ADDED, ""),
        ("/page.html", "html", RowOutcome.REFUSED, FetchFailure.NOT_IMAGE),
        ("/fake.jpg", "lies", RowOutcome.REFUSED, FetchFailure.NOT_IMAGE),
        ("/corrupt.jpg", "broken jpeg", RowOutcome.REFUSED, FetchFailure.REJECTED),
        ("/huge-streamed", "huge", RowOutcome.REFUSED, FetchFailure.TOO_LARGE),
        ("/slow", "slow", RowOutcome.REFUSED, FetchFailure.TIMEOUT),
        ("/loop-a", "loop", RowOutcome.REFUSED, FetchFailure.REDIRECT_LOOP),
        ("/to-private", "ssrf", RowOutcome.REFUSED, FetchFailure.BLOCKED),
        ("/missing.jpg", "404", RowOutcome.REFUSED, FetchFailure.HTTP_STATUS),
        ("/unavailable", "503", RowOutcome.REFUSED, FetchFailure.HTTP_STATUS),
        ("/noai.png", "opted out", RowOutcome.REFUSED, FetchFailure.OPTED_OUT),
    ]
    rows = [(server.url(path), caption, "Ann") for path, caption, _, _ in cases]
    rows.append((f"http://127.0.0.1:{closed_port()}/x.jpg", "refused", "Ann"))
    rows.append(("http://no-such-host.invalid/x.jpg", "dns", "Ann"))
    rows.append(("ftp://example.com/x.jpg", "not http", "Ann"))
    job = _job(manager, _csv(rows))
    assert job.status == ImportStatus.RUNNING and job.rows_total == len(rows)

    assert _run(job) == "done"
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE
    outcomes = dict(job.rows.values_list("position", "outcome"))
    assert sorted(outcomes) == list(range(len(rows)))  # one outcome per row, none lost
    failures = dict(job.collect_items.values_list("position", "failure"))
    for position, (_path, _caption, outcome, failure) in enumerate(cases):
        assert outcomes[position] == outcome, (position, job.rows.get(position=position).reason)
        assert failures[position] == failure, position
    extra = len(cases)
    assert failures[extra] == FetchFailure.REFUSED
    assert failures[extra + 1] == FetchFailure.DNS
    assert failures[extra + 2] == FetchFailure.INVALID
    # Counters add up and match the rows.
    assert job.rows_done == len(rows) == job.added + job.present + job.merged + job.refused
    assert job.refused == job.rows.filter(outcome=RowOutcome.REFUSED).count()
    # Reasons a person can read.
    assert "Not fetched (Blocked address)" in job.rows.get(position=11).reason
    assert "HTTP 503" in job.rows.get(position=13).reason
    # The 503 was tried again (attempts), the 404 was not.
    assert server.hits["/unavailable"] >= 2 and server.hits["/missing.jpg"] == 1


@pytest.mark.django_db
def test_a_fetched_image_goes_the_normal_ingest_way_with_its_provenance(manager, server):
    url = server.url("/exif.jpg")
    job = _job(manager, _csv([(url, "a camera photo", "Ann Smith")]))
    _run(job)
    image = Image.objects.get(project=job.project)
    assert (image.source, image.source_url, image.original_name) == (Source.URL, url, "exif.jpg")
    with default_storage.open(image.file.name, "rb") as handle:
        stored = PILImage.open(io.BytesIO(handle.read()))
    assert not stored.getexif(), "EXIF is stripped as for every import"
    assert list(image.captions.values_list("text", flat=True)) == ["a camera photo"]
    item = job.collect_items.get()
    assert item.extra == {"photographer": "Ann Smith"}
    # Read into rows once: the stored manifest is gone.
    assert not default_storage.exists(job.inputs[0]["storage"])
    assert item.state == FetchState.FETCHED


@pytest.mark.django_db
def test_with_the_allow_list_off_loopback_is_never_fetched(manager, server, settings):
    settings.CONCORD_COLLECT_ALLOW_CIDRS = []
    path = "/good.png?ssrf-probe"
    job = _job(manager, _csv([(server.url(path), "x", "")]))
    _run(job)
    item = job.collect_items.get()
    assert (item.state, item.failure) == (FetchState.FAILED, FetchFailure.BLOCKED)
    assert server.hits[path] == 0


@pytest.mark.django_db
def test_pause_resume_and_retry_failed_rows_only(manager, server):
    server.flaky_ok = False
    rows = [(server.url(f"/img/{n}.jpg"), f"image {n}", "") for n in range(5)]
    rows.append((server.url("/flaky.png"), "flaky", ""))
    job = _job(manager, _csv(rows))
    collection.collection_pause(job=job)
    assert _run(job) == "paused"
    assert job.collect_items.filter(state=FetchState.PENDING).count() == 6
    with pytest.raises(collection.CollectionRefused):
        collection.collection_pause(job=job)

    collection.collection_resume(job=job)
    assert _run(job) == "done"
    job.refresh_from_db()
    assert (job.added, job.refused) == (5, 1)
    progress = collection.collection_progress(job=job)
    assert (progress.fetched, progress.failed, progress.pending) == (5, 1, 0)
    assert progress.failures == [(FetchFailure.HTTP_STATUS, "HTTP error status", 1)]

    server.flaky_ok = True
    hits_before = {n: server.hits[f"/img/{n}.jpg"] for n in range(5)}
    assert collection.collection_retry_failed(job=job) == 1
    job.refresh_from_db()
    assert (job.status, job.refused, job.rows_done) == (ImportStatus.RUNNING, 0, 5)
    assert _run(job) == "done"
    job.refresh_from_db()
    assert (job.added, job.refused, job.rows_done) == (6, 0, 6)
    assert ImportRow.objects.filter(job=job).count() == 6
    # Only the failed row was fetched again.
    assert {n: server.hits[f"/img/{n}.jpg"] for n in range(5)} == hits_before
    assert Caption.objects.filter(image__project=job.project).count() == 6


@pytest.mark.django_db
def test_claims_never_overlap_and_an_expired_claim_is_taken_again(manager, server, settings):
    rows = [(server.url(f"/img/{n}.jpg"), f"c{n}", "") for n in range(20)]
    job = _job(manager, _csv(rows))
    first = collection._claim(job=job, token="a" * 32)
    second = collection._claim(job=job, token="b" * 32)
    assert len(first) == len(second) == 8
    assert not {i.pk for i in first} & {i.pk for i in second}
    settings.CONCORD_COLLECT_CLAIM_SECONDS = -1  # every claim has expired: the workers died
    third = collection._claim(job=job, token="c" * 32)
    assert {i.position for i in third} == set(range(8))
    # The dead worker's late write is dropped: the row is the new claimer's.
    with _fetcher() as fetcher:
        collection._fetch_and_write(job_id=job.pk, items=first, token="a" * 32, fetcher=fetcher)
    assert ImportRow.objects.filter(job=job).count() == 0
    with _fetcher() as fetcher:
        collection._fetch_and_write(job_id=job.pk, items=third, token="c" * 32, fetcher=fetcher)
    assert ImportRow.objects.filter(job=job).count() == 8


@pytest.mark.django_db
def test_the_project_concurrency_limit_caps_claims(manager, server, settings):
    settings.CONCORD_COLLECT_PROJECT_CONCURRENCY = 5
    job = _job(manager, _csv([(server.url(f"/img/{n}.jpg"), "c", "") for n in range(20)]))
    assert len(collection._claim(job=job, token="a" * 32)) == 5
    assert collection._claim(job=job, token="b" * 32) == []


@pytest.mark.django_db
def test_jsonl_tsv_and_parquet_manifests(manager, server):
    urls = [server.url(f"/img/{n}.jpg") for n in (101, 102)]
    jsonl = "\n".join(
        json.dumps({"url": url, "caption": f"j{n}", "key": n, "width": 64})
        for n, url in enumerate(urls)
    )
    tsv = "url\tcaption\n" + "\n".join(f"{url}\tt{n}" for n, url in enumerate(urls))
    table = pa.table({"URL": urls, "TEXT": ["p0", "p1"], "similarity": [0.3, 0.4]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    for name, body, columns in [
        ("m.jsonl", jsonl.encode(), {}),
        ("m.tsv", tsv.encode(), {}),
        ("m.parquet", buffer.getvalue(), {"url_column": "URL", "caption_column": "TEXT"}),
    ]:
        job = _job(manager, body, name=name, **columns)
        assert _run(job) == "done", name
        job.refresh_from_db()
        assert (job.added, job.refused) == (2, 0), (name, list(job.rows.values("reason")))
    item = CollectItem.objects.filter(job__inputs__0__name="m.parquet").order_by("position").first()
    assert item is not None and item.extra == {"similarity": 0.3} and item.caption == "p0"


@pytest.mark.django_db
def test_a_manifest_without_the_url_column_fails_the_job_with_the_reason(manager):
    job = _job(manager, b"image,caption\na.jpg,x\n")
    assert job.status == ImportStatus.FAILED and "No 'url' column" in job.error
    with pytest.raises(InputRefused):
        collection.collection_job_create(
            project=job.project, manifest=ContentFile(b"x", name="m.xlsx"), created_by=manager
        )


def test_the_manifest_is_read_as_a_stream():
    body = b"url,caption\n" + b"".join(
        b"http://example.com/%d.jpg,caption %d\n" % (n, n) for n in range(200_000)
    )

    class Counting(io.BytesIO):
        furthest = 0

        def read(self, *args):
            data = super().read(*args)
            Counting.furthest = max(Counting.furthest, self.tell())
            return data

        def read1(self, *args):
            data = super().read1(*args)
            Counting.furthest = max(Counting.furthest, self.tell())
            return data

        def readinto(self, buffer):
            n = super().readinto(buffer)
            Counting.furthest = max(Counting.furthest, self.tell())
            return n

    rows = read_url_manifest(Counting(body), name="big.csv")
    first = [next(rows) for _ in range(10)]
    assert first[9].url == "http://example.com/9.jpg" and first[9].caption == "caption 9"
    assert Counting.furthest < len(body) // 10, "ten rows must not read the whole file"
    assert sum(1 for _ in rows) == 200_000 - 10


def test_bad_rows_carry_their_reason_and_the_rest_is_read():
    body = (
        b"url,caption\n"
        b"http://example.com/a.jpg,fine\n"
        b",no url\n"
        b"javascript:alert(1),script\n"
        b"http://example.com/b.jpg,one,too many\n"
        b"http://example.com/c.jpg,nul \x00 here\n"
        b"http://example.com/d.jpg,\xff\xfe not utf-8\n"
        b"http://example.com/e.jpg,last\n"
    )
    rows = list(read_url_manifest(io.BytesIO(body), name="m.csv"))
    assert [bool(row.error) for row in rows] == [False, True, True, True, True, True, False]
    assert [row.where for row in rows] == [f"row {n}" for n in range(1, 8)]


@pytest.mark.django_db
def test_the_file_import_runner_leaves_a_collection_to_the_collection_workers(manager, server):
    from datasets.ingest.services.jobs import import_job_run

    project = factories.project(manager=manager, name="Not a file import")
    job = collection.collection_job_create(
        project=project,
        manifest=ContentFile(_csv([(server.url("/good.png"), "x", "")]), name="u.csv"),
        created_by=manager,
    )
    assert _run(job) == "staging"  # not read in yet: the fetch task sends it to be read first
    assert import_job_run(job_id=job.pk).status == ImportStatus.QUEUED
    assert not ImportRow.objects.filter(job=job).exists()
    job = collection.collection_stage(job_id=job.pk)
    assert _run(job) == "done"


def test_beat_resumes_a_collection_whose_loops_died_and_leaves_a_live_one(
    manager, server, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    job = _job(manager, _csv([(server.url(f"/img/{n}.jpg"), f"photo {n}", "") for n in range(4)]))
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)
    long_ago = timezone.now() - timedelta(hours=1)
    # A worker claimed two rows an hour ago and died; nothing has moved since.
    first = CollectItem.objects.filter(job=job).order_by("position")[:2]
    CollectItem.objects.filter(pk__in=[i.pk for i in first]).update(
        state=FetchState.CLAIMED, claimed_by="dead", claimed_at=long_ago
    )
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert collection.collections_recover() == [job.pk]
    assert len(sent) == settings.CONCORD_COLLECT_TASKS  # the fetch loops, queued again

    # A loop that claimed a row a moment ago is alive: nothing more is sent.
    CollectItem.objects.filter(pk=first[0].pk).update(claimed_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert collection.collections_recover() == []
    assert sent == []

    # Resumed, the job ends with every row once.
    CollectItem.objects.filter(pk=first[0].pk).update(claimed_at=long_ago)
    assert _run(job) == "done"
    assert ImportRow.objects.filter(job=job).count() == 4


def test_column_names_are_found_in_any_case_like_the_importers():
    """`URL`/`TEXT` as a header: the url column is found whatever its case (CSV, TSV, JSONL and
    Parquet alike), and so is a caption column named in another case."""
    csv_rows = list(
        read_url_manifest(
            io.BytesIO(b"URL\tTEXT\nhttp://example.org/a.jpg\ta cat\n"),
            name="m.tsv",
            caption_column="text",
        )
    )
    assert [(r.url, r.caption, r.error) for r in csv_rows] == [
        ("http://example.org/a.jpg", "a cat", "")
    ]
    jsonl = list(
        read_url_manifest(
            io.BytesIO(b'{"Url": "http://example.org/b.jpg", "Caption": "b"}\n'), name="m.jsonl"
        )
    )
    assert [(r.url, r.caption) for r in jsonl] == [("http://example.org/b.jpg", "b")]
    sink = io.BytesIO()
    pq.write_table(pa.table({"URL": ["http://example.org/c.jpg"], "CAPTION": ["c"]}), sink)
    sink.seek(0)
    parquet = list(read_url_manifest(sink, name="m.parquet"))
    assert [(r.url, r.caption) for r in parquet] == [("http://example.org/c.jpg", "c")]


def test_a_binary_file_is_refused_as_not_text_with_a_readable_reason():
    from datasets.ingest.sources import SourceError

    noise = bytes(range(128, 256)) * 20 + b"\n" + bytes(range(256)) * 4
    with pytest.raises(SourceError) as refused:
        list(read_url_manifest(io.BytesIO(noise), name="urls.csv"))
    assert "not a text manifest" in str(refused.value)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in str(refused.value))


def test_rows_held_by_a_worker_that_stopped_are_shown_with_when_they_come_back(
    manager, server, settings, client
):
    from datetime import timedelta

    from django.urls import reverse
    from django.utils import timezone

    job = _job(manager, _csv([(server.url(f"/img/{n}.jpg"), f"photo {n}", "") for n in range(3)]))
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)
    claimed_at = timezone.now() - timedelta(minutes=3)
    first = CollectItem.objects.filter(job=job).order_by("position").first()
    CollectItem.objects.filter(pk=first.pk).update(
        state=FetchState.CLAIMED, claimed_by="gone", claimed_at=claimed_at
    )
    progress = collection.collection_progress(job=job)
    assert progress.held_long == 1
    assert progress.taken_back_at == claimed_at + timedelta(
        seconds=settings.CONCORD_COLLECT_CLAIM_SECONDS
    )
    client.force_login(manager)
    page = client.get(reverse("import-job", args=[job.project.slug, job.pk])).content.decode()
    assert "data-collect-held" in page and "take it back at" in page


@pytest.mark.django_db
@pytest.mark.parametrize("batch", [8, 1])
def test_the_same_url_twice_is_added_once_then_merged(manager, server, settings, batch):
    """In one batch or in two: a row is "added" only when it made the image, so the rows added
    are the images added; the second row's caption still goes to the image."""
    settings.CONCORD_COLLECT_BATCH = batch
    same, other = server.url("/img/71.jpg"), server.url("/img/72.jpg")
    job = _job(
        manager, _csv([(same, "new one a", "x"), (same, "new one b", "y"), (other, "c", "z")])
    )
    assert _run(job) == "done"
    job.refresh_from_db()
    outcomes = list(job.rows.order_by("position").values_list("outcome", flat=True))
    assert outcomes == [RowOutcome.ADDED, RowOutcome.MERGED, RowOutcome.ADDED]
    assert (job.added, job.merged, job.images_added, job.captions_added) == (2, 1, 2, 3)
    first = job.rows.get(position=0)
    second = job.rows.get(position=1)
    assert second.image_id == first.image_id
    assert f"image {first.image_id}" in second.reason
    texts = sorted(Caption.objects.filter(image_id=first.image_id).values_list("text", flat=True))
    assert texts == ["new one a", "new one b"]


def _reasons(body: bytes, name: str) -> list[str]:
    return [row.error for row in read_url_manifest(io.BytesIO(body), name=name)]


def test_a_value_that_is_not_text_is_refused_naming_what_it_is_in_jsonl_and_parquet():
    url = "http://example.com/a.jpg"
    lines = [
        {"url": url, "caption": {"nested": "obj"}},
        {"url": url, "caption": ["a", "list"]},
        {"url": url, "caption": 3},
        {"url": url, "caption": True},
        {"url": 123, "caption": "fine"},
        {"url": url, "caption": "fine"},
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    assert _reasons(body, "m.jsonl") == [
        "'caption' must be text, not an object.",
        "'caption' must be text, not a list.",
        "'caption' must be text, not a number.",
        "'caption' must be text, not true or false.",
        "'url' must be text, not a number.",
        "",
    ]
    for table, said in [
        (pa.table({"url": [url], "caption": [7]}), "'caption' must be text, not a number."),
        (pa.table({"url": [1], "caption": ["x"]}), "'url' must be text, not a number."),
        (
            pa.table({"url": [url], "caption": [{"k": "v"}]}),
            "'caption' must be text, not an object.",
        ),
    ]:
        parquet = io.BytesIO()
        pq.write_table(table, parquet)
        assert _reasons(parquet.getvalue(), "m.parquet") == [said]


def test_reasons_are_worded_for_a_person():
    deep = b'{"url": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"
    assert _reasons(deep, "m.jsonl") == ["not valid JSON (nested too deeply)."]
    body = (
        b"url,caption\n"
        b"http://u:p@[::1/x.jpg,unclosed\n"
        b"http://u:p@exa mple.com/x.jpg,space in host\n"
        b"http://exa\tmple.com/x.jpg,tab in host\n"
        b"ftp://example.com/x.jpg,scheme\n"
    )
    reasons = _reasons(body, "m.csv")
    assert reasons[0] == "'url' is not a valid URL (bad host): 'http://***@[::1/x.jpg'."
    assert reasons[1] == "'url' is not a valid URL (bad host): 'http://***@exa mple.com/x.jpg'."
    assert reasons[2].startswith("'url' is not a valid URL (bad host)")
    assert reasons[3].startswith("'url' must be an http or https URL")
    ragged = _reasons(b"url,caption\nhttp://example.com/a.jpg\nhttp://e.com/b.jpg,b,c\n", "m.csv")
    assert ragged == [
        "1 value where the header has 2 columns.",
        "3 values where the header has 2 columns.",
    ]
    assert not any("p@" in reason for reason in reasons)


@pytest.mark.django_db
def test_a_job_error_from_a_library_message_reads_cleanly(manager):
    job = _job(manager, b"PAR1" + b"\x00" * 40 + b"PAR1", name="m.parquet")
    assert job.status == ImportStatus.FAILED and job.error.startswith("Not a Parquet file: ")
    assert "\\x0a" not in job.error and "\n" not in job.error


@pytest.mark.django_db
def test_retry_on_a_failed_collection_names_retry_not_resume(manager, client):
    job = _job(manager, b"image,caption\na.jpg,x\n")
    assert job.status == ImportStatus.FAILED
    client.force_login(manager)
    response = client.post(
        reverse("api-collection-retry", kwargs={"slug": job.project.slug, "job_id": job.pk})
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Failed rows can be retried only in a collection that is done, paused or running; this"
        " one is failed."
    )


def test_urls_in_provenance_columns_lose_their_secrets_too():
    body = (
        b"url,caption,page,meta\n"
        b'http://e.com/a.jpg,x,http://u:PW@e.com/p?token=TOK&id=3,"{""src"": ""http://e.com/?sig=S""}"\n'
    )
    (row,) = read_url_manifest(io.BytesIO(body), name="m.csv")
    assert row.extra["page"] == "http://***@e.com/p?token=***&id=3"
    assert row.extra["meta"] == '{"src": "http://e.com/?sig=***"}'
