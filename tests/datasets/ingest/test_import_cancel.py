"""Cancel and Retry of imports from the job's page (managers only, 409 with the reason when the
job's state does not allow it): a message sent before the cancel reads nothing, a run cancelled
while it reads stops before its next batch with every row whole, and a retry resumes it."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils.html import escape

from config.jobs import job_start
from datasets.ingest.services import jobs
from datasets.ingest.services.jobs import import_job_create, import_job_run
from datasets.models import Image, ImportJob, ImportKind, ImportStatus, JobLease, Source
from tests import factories
from tests.datasets.ingest.corpus import zip_of

ROWS = 120  # more than two batches (jobs.BATCH_ROWS)


def _job(project, manager, rows: int = ROWS) -> ImportJob:
    images = [
        (f"{n:03d}.jpg", factories.image_bytes(seed=9000 + n, size=(40, 30))) for n in range(rows)
    ]
    lines = ["image,caption"] + [f"{name},picture {name}" for name, _ in images]
    return import_job_create(
        project=project,
        kind="manifest",
        manifest=ContentFile("\n".join(lines).encode(), name="m.csv"),
        images=[ContentFile(zip_of(images), name="images.zip")],
        created_by=manager,
    )


def _url(name, job):
    return reverse(name, kwargs={"slug": job.project.slug, "job_id": job.pk})


@pytest.mark.django_db
def test_cancel_and_retry_from_the_page(client, project, manager, annotator):
    job = _job(project, manager, rows=3)
    client.force_login(annotator)
    assert client.post(_url("import-cancel", job)).status_code == 403
    client.force_login(manager)
    page = client.get(_url("import-job", job)).content.decode()
    assert "data-cancel" in page and "data-retry" not in page
    refused = client.post(_url("import-retry", job))
    assert refused.status_code == 409
    assert jobs.NOT_RETRYABLE.format(pk=job.pk, status="queued") in refused.content.decode()

    assert client.post(_url("import-cancel", job)).status_code == 302
    job.refresh_from_db()
    assert (job.status, job.error) == (
        ImportStatus.CANCELLED,
        jobs.JOB_CANCELLED.format(user=manager.username),
    )
    # The message already on its way finds it cancelled and reads nothing; its files stay.
    assert jobs.import_job_run_leased(job_id=job.pk).status == ImportStatus.CANCELLED
    assert job.rows.count() == 0
    assert all(default_storage.exists(entry["storage"]) for entry in job.inputs)
    page = client.get(_url("import-job", job)).content.decode()
    assert "data-retry" in page and "Cancelled" in page and "data-cancel" not in page
    refused = client.post(_url("import-cancel", job))
    assert refused.status_code == 409
    assert jobs.NOT_CANCELLABLE.format(pk=job.pk, status="cancelled") in refused.content.decode()
    # The same word everywhere: the API, the Upload page's table (QA: both said "failed").
    api = client.get(f"/api/v1/projects/{job.project.slug}/imports/{job.pk}/").json()
    assert api["status"] == "cancelled"
    table = client.get(reverse("project-upload", args=[job.project.slug])).content.decode()
    assert f'data-job="{job.pk}" data-status="cancelled"' in table and "Failed" not in table

    assert client.post(_url("import-retry", job)).status_code == 302
    job.refresh_from_db()
    assert (job.status, job.error, job.options) == (ImportStatus.QUEUED, "", {})
    done = jobs.import_job_run_leased(job_id=job.pk)
    assert (done.status, done.rows_done, done.added) == (ImportStatus.DONE, 3, 3)
    assert not any(default_storage.exists(entry["storage"]) for entry in done.inputs)
    assert client.post(_url("import-retry", job)).status_code == 409


@pytest.mark.django_db
def test_an_import_cancelled_while_it_reads_stops_whole_and_a_retry_reads_the_rest(
    project, manager
):
    job = _job(project, manager)
    lease = job_start(jobs.RUN, str(job.pk))
    seen, stopping = [], []

    def cancel_after_the_first_batch(done, total):
        seen.append(done)
        if len(seen) == 1:
            jobs.import_job_cancel(job=job, by=manager)
            # The batch in hand is not committed yet: the counts are not final.
            cancelled = ImportJob.objects.get(pk=job.pk)
            stopping.append(jobs.import_job_stopping(job=cancelled))

    ended = import_job_run(job_id=job.pk, on_progress=cancel_after_the_first_batch, lease=lease)
    assert len(seen) == 1, "it stops before its next batch"
    assert ended.status == ImportStatus.CANCELLED and ended.options == {jobs.CANCELLED: True}
    assert stopping == [True] and not jobs.import_job_stopping(job=ended)  # then final
    # Every row read is whole: its outcome, its image and caption; none of the rest started.
    read = ended.rows_done
    assert 0 < read < ROWS
    assert (
        ended.rows.count() == read == ended.added == Image.objects.filter(project=project).count()
    )
    assert JobLease.objects.get(pk=lease.pk).heartbeat_at is None

    jobs.import_job_retry(job=ended)
    done = jobs.import_job_run_leased(job_id=job.pk)
    assert (done.status, done.rows_done, done.added) == (ImportStatus.DONE, ROWS, ROWS)
    assert [row.position for row in done.rows.order_by("position")] == list(range(ROWS))
    assert Image.objects.filter(project=project).count() == ROWS


@pytest.mark.django_db
def test_retry_is_refused_where_it_cannot_run(client, project, manager):
    client.force_login(manager)
    # A job whose input could not be read: its files are deleted, no Retry is offered.
    unreadable = import_job_create(
        project=project,
        kind="manifest",
        manifest=ContentFile(b"file,text\na.jpg,x\n", name="m.csv"),
        images=[ContentFile(zip_of([("a.jpg", factories.image_bytes(seed=1))]), name="i.zip")],
        created_by=manager,
    )
    unreadable = import_job_run(job_id=unreadable.pk)
    assert unreadable.status == ImportStatus.FAILED
    assert "data-retry" not in client.get(_url("import-job", unreadable)).content.decode()
    refused = client.post(_url("import-retry", unreadable))
    assert refused.status_code == 409
    assert escape(jobs.INPUTS_GONE.format(pk=unreadable.pk)) in refused.content.decode()
    # A collection has its own Pause, Resume and Retry failed rows.
    collection = ImportJob.objects.create(
        project=project, kind=ImportKind.COLLECT, source=Source.URL, created_by=manager
    )
    for name in ("import-cancel", "import-retry"):
        refused = client.post(_url(name, collection))
        assert refused.status_code == 409 and jobs.COLLECTION_ACTIONS in refused.content.decode()
