"""An import whose worker is killed with SIGKILL is noticed by beat's recovery and finished by
another worker: every row exactly once, within the stale time plus a worker's start."""

import os
import signal
import time

import pytest
from django.core.files.base import ContentFile

from datasets.ingest.services import jobs
from datasets.ingest.tasks import run_import
from datasets.models import Image, ImportJob, ImportKind, ImportStatus, JobLease, Source
from tests import factories
from tests.datasets.curation.test_dedup_worker import BOOT_SECONDS
from tests.datasets.ingest.corpus import zip_of
from tests.datasets.releases.test_release_recovery import (
    STALE,
    _purge_default,
    _stop,
    _wait,
    _worker,
)

IMAGES = 160


@pytest.mark.django_db(transaction=True)
def test_a_killed_import_is_sent_again_by_beat_and_finished_once(
    manager, media_storage, settings, tmp_path
):
    settings.CONCORD_JOB_STALE_SECONDS = {**settings.CONCORD_JOB_STALE_SECONDS, "*": STALE}
    project = factories.project(manager=manager, name="Recover an import")
    images = {
        f"{n:03d}.jpg": factories.image_bytes(seed=7000 + n, size=(160, 120)) for n in range(IMAGES)
    }
    lines = ["image,caption"] + [f"{name},only {name}" for name in sorted(images)]
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
    _purge_default()
    log = tmp_path / "worker.log"
    first = _worker(media_storage, tmp_path, log)
    try:
        run_import.delay(job.pk)
        _wait(lambda: ImportJob.objects.get(pk=job.pk).rows_done > 0, first, log, BOOT_SECONDS)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING and 0 < job.rows_done < IMAGES
    assert jobs.import_jobs_recover() == []  # heartbeat still fresh

    killed_at = time.monotonic()
    second = _worker(media_storage, tmp_path, log)
    try:
        _wait(lambda: jobs.import_jobs_recover() == [job.pk], second, log, STALE + 10)
        noticed = time.monotonic() - killed_at
        _wait(
            lambda: ImportJob.objects.get(pk=job.pk).status == ImportStatus.DONE,
            second,
            log,
            BOOT_SECONDS + 60,
        )
    finally:
        _stop(second)
    print(f"dead import noticed after {noticed:.1f} s")
    job.refresh_from_db()
    assert [row.position for row in job.rows.order_by("position")] == list(range(IMAGES))
    assert (job.rows_done, job.added, job.refused) == (IMAGES, IMAGES, 0)
    assert Image.objects.filter(project=project).count() == IMAGES == job.images_added
    assert JobLease.objects.get(name=jobs.RUN, key=str(job.pk)).runs == 0  # finished
