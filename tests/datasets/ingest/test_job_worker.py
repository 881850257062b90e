"""A real Celery worker process, killed with SIGKILL in the middle of an import job.

Sending the job again (what a recovery of jobs whose worker died does) must finish it: every row
exactly once, in order, no caption doubled or lost across the kill, no image file left behind
without its row.
"""

import os
import signal
import subprocess
import time
import uuid
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from datasets.ingest.services import jobs
from datasets.ingest.tasks import run_import
from datasets.models import (
    Caption,
    Image,
    ImportJob,
    ImportKind,
    ImportStatus,
    JobLease,
    Pair,
    Source,
)
from tests import factories
from tests.datasets.curation.test_dedup_worker import BOOT_SECONDS, _worker
from tests.datasets.ingest.corpus import zip_of

IMAGES = 160


def _rows_done(job_id: int) -> int:
    return ImportJob.objects.filter(pk=job_id).values_list("rows_done", flat=True).get()


def _wait_until(predicate, process: subprocess.Popen, log, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_leaves_nothing_lost_or_doubled(manager, media_storage, tmp_path):
    project = factories.project(manager=manager, name="Kill an import")
    images = {
        f"{n:03d}.jpg": factories.image_bytes(seed=5000 + n, size=(160, 120)) for n in range(IMAGES)
    }
    images["copy.jpg"] = images["000.jpg"]
    lines = ["image,caption"]
    for name in sorted(images):
        lines += [f"{name},a caption", f"{name},a caption", f"{name},only {name}"]
    total = len(lines) - 1
    # Stored and written as import_job_create does, but sent to this test's own queue.
    job = jobs._job_create(
        project=project,
        kind=ImportKind.MANIFEST,
        source=Source.MANIFEST,
        created_by=manager,
        inputs=[
            ("manifest", ContentFile("\n".join(lines).encode(), name="m.csv")),
            ("images", ContentFile(zip_of(list(images.items())), name="images.zip")),
        ],
    )
    queue = f"import-kill-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"

    first = _worker(queue, media_storage, log)
    try:
        run_import.apply_async(args=[job.pk], queue=queue)
        _wait_until(lambda: _rows_done(job.pk) > 0, first, log, BOOT_SECONDS)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING, "the worker died: nobody marked the job"
    assert 0 < job.rows_done < total, "the kill must land in the middle of the job"
    assert job.rows.count() == job.rows_done  # counters committed with their rows

    # The dead run's lease refuses a second run until its heartbeat is older than the stale
    # time (test_job_recovery.py waits for that with a real beat check); here it is aged.
    JobLease.objects.filter(name=jobs.RUN, key=str(job.pk)).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    second = _worker(queue, media_storage, log)
    try:
        run_import.apply_async(args=[job.pk], queue=queue)  # the recovery's part
        _wait_until(
            lambda: ImportJob.objects.get(pk=job.pk).status == ImportStatus.DONE,
            second,
            log,
            BOOT_SECONDS + 60,
        )
    finally:
        second.terminate()
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()

    job.refresh_from_db()
    assert [row.position for row in job.rows.order_by("position")] == list(range(total))
    assert (job.rows_done, job.rows_total, job.refused) == (total, total, 0)
    assert (job.added + job.present + job.merged) == total
    assert Image.objects.filter(project=project).count() == IMAGES
    assert job.images_added == IMAGES
    for image in Image.objects.filter(project=project):
        texts = sorted(image.captions.values_list("text", flat=True))
        expected = ["a caption", "a caption", f"only {image.original_name}"]
        if image.original_name == "000.jpg":
            expected = sorted([*expected, "a caption", "a caption", "only copy.jpg"])
        assert texts == sorted(expected), image.original_name
    captions = Caption.objects.filter(image__project=project)
    assert captions.count() == total == job.captions_added
    assert Pair.objects.filter(caption__in=captions).count() == total
    stored = {
        str(path.relative_to(media_storage))
        for path in (media_storage / "images").rglob("*")
        if path.is_file()
    }
    assert stored == set(Image.objects.filter(project=project).values_list("file", flat=True))
