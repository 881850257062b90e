"""A real Celery worker process fetching a collection, killed with SIGKILL mid-job, then the job
resumed: every row ends with exactly one outcome, none is lost, no image or caption is doubled,
and no stored file is left without its image."""

import os
import signal
import time
import uuid

import pytest
from django.core.files.base import ContentFile

from datasets.ingest.services import collection
from datasets.ingest.tasks import collect_fetch
from datasets.models import (
    Caption,
    CollectItem,
    FetchState,
    Image,
    ImportJob,
    ImportRow,
    ImportStatus,
    RowOutcome,
)
from tests import factories
from tests.datasets.curation.test_dedup_worker import BOOT_SECONDS, _worker
from tests.datasets.ingest.image_server import ImageServer

URLS = 120


@pytest.fixture
def server():
    running = ImageServer()
    running.delay = 0.05  # slow enough for the kill to land mid-job
    yield running
    running.close()


def _claimed(job_id: int) -> bool:
    return CollectItem.objects.filter(job_id=job_id, state=FetchState.CLAIMED).exists()


def _rows_done(job_id: int) -> int:
    return ImportJob.objects.filter(pk=job_id).values_list("rows_done", flat=True).get()


@pytest.mark.django_db(transaction=True)
def test_a_collect_worker_killed_mid_job_then_resumed_loses_and_doubles_nothing(
    manager, media_storage, tmp_path, server, settings, monkeypatch
):
    settings.CONCORD_COLLECT_ALLOW_CIDRS = ["127.0.0.0/8"]
    settings.CONCORD_COLLECT_PER_HOST_RATE = 0
    for name, value in {
        "CONCORD_COLLECT_ALLOW_CIDRS": "127.0.0.0/8",
        "CONCORD_COLLECT_BATCH": "8",
        "CONCORD_COLLECT_THREADS": "4",
        "CONCORD_COLLECT_PER_HOST_RATE": "0",
        "CONCORD_COLLECT_RUN_SECONDS": "600",
    }.items():
        monkeypatch.setenv(name, value)
    project = factories.project(manager=manager, name="Kill a collection")
    lines = ["url,caption"] + [f"{server.url(f'/img/{n}.jpg')},caption {n}" for n in range(URLS)]
    lines.append(f"{server.url('/img/0.jpg')}?again,caption 0")  # the same URL's bytes again
    total = len(lines) - 1
    job = collection.collection_job_create(
        project=project,
        manifest=ContentFile("\n".join(lines).encode(), name="urls.csv"),
        created_by=manager,
    )
    job = collection.collection_stage(job_id=job.pk)
    assert job.rows_total == total
    queue = f"collect-kill-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"

    worker = _worker(queue, media_storage, log)
    try:
        collect_fetch.apply_async(args=[job.pk], queue=queue)
        deadline = time.monotonic() + BOOT_SECONDS
        # Killed while it holds claimed rows it is fetching, after some rows were written.
        while _rows_done(job.pk) < 16 or not _claimed(job.pk):
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING
    assert 0 < job.rows_done < total, "the kill must land in the middle of the job"
    assert job.rows.count() == job.rows_done  # counters committed with their rows
    held = CollectItem.objects.filter(job=job, state=FetchState.CLAIMED).count()
    assert held > 0, "the worker died holding rows"

    # Recovery: the dead worker's claims expire, the job is resumed and run to the end.
    settings.CONCORD_COLLECT_CLAIM_SECONDS = 0
    collection.collection_resume(job=job)
    with collection.Fetcher(policy=collection.fetch_policy()) as fetcher:
        assert collection.collection_run(job_id=job.pk, seconds=0, fetcher=fetcher) == "done"

    job.refresh_from_db()
    positions = list(ImportRow.objects.filter(job=job).values_list("position", flat=True))
    assert sorted(positions) == list(range(total)), "every row once, none lost"
    assert (job.rows_done, job.refused) == (total, 0)
    assert job.rows.filter(outcome=RowOutcome.MERGED).count() == 1
    assert Image.objects.filter(project=project).count() == URLS
    captions = Caption.objects.filter(image__project=project)
    assert captions.count() == URLS  # "caption 0" twice on one image is one caption
    assert not CollectItem.objects.filter(job=job).exclude(state=FetchState.FETCHED).exists()
    stored = {
        str(path.relative_to(media_storage))
        for path in (media_storage / "images").rglob("*")
        if path.is_file()
    }
    assert stored == set(Image.objects.filter(project=project).values_list("file", flat=True))
