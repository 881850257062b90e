"""Release builds that recover: a real worker killed with SIGKILL mid-build, beat's recovery, and
retry and cancel from the pages."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from config.celery import app
from config.jobs import job_start
from datasets.models import ImageSplit, JobLease, Release, ReleaseStatus
from datasets.releases import services
from datasets.releases.exporters import verify_manifest
from tests import factories
from tests.datasets.curation.test_dedup_worker import BOOT_SECONDS, _database_url
from tests.datasets.releases.test_releases import _dataset, _download

STALE = 4  # seconds without a heartbeat before a build counts as dead, in this test


def _worker(media, tmp_path, log, *, queues: str = "ingest,default") -> subprocess.Popen:
    """A worker process on ``queues`` (default: imports and releases), with this test's
    storage folders."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": django_settings.SECRET_KEY,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "CONCORD_VAR_DIR": str(django_settings.VAR_DIR),
        "MEDIA_ROOT": str(media),
        "CONCORD_RELEASES_ROOT": str(django_settings.CONCORD_RELEASES_ROOT),
        "CONCORD_MODELS_ROOT": str(django_settings.CONCORD_MODELS_ROOT),
        "CONCORD_SCRATCH_DIR": str(tmp_path / "worker-scratch"),
        "CONCORD_JOB_STALE_SECONDS": str(STALE),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    command = [
        *(sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo"),
        # Import jobs are routed to their own queue (ingest); releases to default.
        *("-Q", queues, "-n", f"release-{uuid.uuid4().hex[:6]}@%h"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"),
    ]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=django_settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _purge_default() -> None:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in ("ingest", "default"):
            channel.queue_declare(queue, durable=True, auto_delete=False)
            channel.queue_purge(queue)


def _wait(predicate, process, log, seconds) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


def _stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_build_is_noticed_and_the_release_built_once(
    manager, media_storage, settings, tmp_path
):
    settings.CONCORD_JOB_STALE_SECONDS = {**settings.CONCORD_JOB_STALE_SECONDS, "*": STALE}
    project = factories.project(manager=manager, name="Kill a build")
    data = _dataset(project, count=150)
    options = services.release_options(project=project, formats=["jsonl"], copy_images=True)
    _purge_default()  # the thumbnails the images asked for: not this test's business
    log = tmp_path / "worker.log"
    first = _worker(media_storage, tmp_path, log)
    try:
        release = services.release_request(project=project, user=manager, options=options)
        _wait(
            lambda: Release.objects.get(pk=release.pk).progress_done > 0,
            first,
            log,
            BOOT_SECONDS,
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    release.refresh_from_db()
    assert release.status == ReleaseStatus.BUILDING, "the kill must land in the middle"
    assert services.releases_recover() == []  # its heartbeat is still fresh
    left = list((tmp_path / "worker-scratch" / "builds").iterdir())
    assert left, "the dead build left its temporary folder"

    killed_at = time.monotonic()
    second = _worker(media_storage, tmp_path, log)
    try:
        _wait(lambda: services.releases_recover() == [release.pk], second, log, STALE + 10)
        noticed = time.monotonic() - killed_at
        _wait(
            lambda: Release.objects.get(pk=release.pk).status == ReleaseStatus.READY,
            second,
            log,
            BOOT_SECONDS + 60,
        )
    finally:
        _stop(second)
    release.refresh_from_db()
    print(f"dead build noticed after {noticed:.1f} s")
    assert noticed < STALE + 10
    assert JobLease.objects.get(name=services.BUILD, key=str(release.pk)).runs == 0  # finished
    assert not (tmp_path / "worker-scratch" / "builds").exists() or not list(
        (tmp_path / "worker-scratch" / "builds").iterdir()
    ), "the rebuild removed the dead attempt's folder and its own"
    # Built once: every image in one split, files exactly as the manifest lists them.
    assert ImageSplit.objects.filter(release=release).count() == len(data["images"])
    target = _download(release, tmp_path)
    assert verify_manifest(directory=target) == []
    copied = list((target / "images").rglob("*.jpg"))
    assert len(copied) == len({path.name for path in copied}) == len(data["images"])


@pytest.mark.django_db
def test_a_build_that_keeps_dying_fails_with_the_reason(project, manager, settings):
    release = services.release_request(
        project=project,
        user=manager,
        options=services.release_options(project=project, formats=["jsonl"]),
        enqueue=False,
    )
    stale = timezone.now() - timedelta(seconds=settings.CONCORD_JOB_STALE_SECONDS["*"] + 1)
    for attempt in range(1, settings.CONCORD_JOB_MAX_RUNS + 1):
        lease = job_start(services.BUILD, str(release.pk))
        Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.BUILDING)
        JobLease.objects.filter(pk=lease.pk).update(heartbeat_at=stale)
        assert services.releases_recover() == [release.pk]
        release.refresh_from_db()
        if attempt < settings.CONCORD_JOB_MAX_RUNS:
            assert release.status == ReleaseStatus.BUILDING
            assert "sent again" in release.stage
    assert release.status == ReleaseStatus.FAILED
    assert release.error == services.ERROR_GAVE_UP.format(runs=settings.CONCORD_JOB_MAX_RUNS)
    assert services.releases_recover() == []


@pytest.mark.django_db
def test_cancel_and_retry_from_the_page(client, project, manager):
    _dataset(project, count=5)
    release = services.release_request(
        project=project,
        user=manager,
        options=services.release_options(project=project, formats=["jsonl"]),
        enqueue=False,
    )
    client.force_login(manager)
    detail = reverse("release-detail", kwargs={"slug": project.slug, "version": release.version})
    assert "data-cancel" in client.get(detail).content.decode()
    kwargs = {"slug": project.slug, "version": release.version}
    assert client.post(reverse("release-cancel", kwargs=kwargs)).status_code == 302
    release.refresh_from_db()
    assert (release.status, release.error) == (
        ReleaseStatus.FAILED,
        services.ERROR_CANCELLED.format(user=manager.username),
    )
    # The message already on its way finds it cancelled and builds nothing.
    assert services.release_build(release_id=release.pk).status == ReleaseStatus.FAILED
    page = client.get(detail).content.decode()
    assert "data-retry" in page and "Cancelled by" in page
    # A second cancel is refused with the reason, not a 500.
    client.post(reverse("release-cancel", kwargs=kwargs))
    assert "Only a queued or building release" in client.get(detail).content.decode()

    assert client.post(reverse("release-retry", kwargs=kwargs)).status_code == 302
    release.refresh_from_db()
    assert release.status == ReleaseStatus.QUEUED and release.error == ""
    assert services.release_build(release_id=release.pk).status == ReleaseStatus.READY


@pytest.mark.django_db
def test_a_build_cancelled_while_it_runs_stops_and_stores_nothing(
    project, manager, releases_root_empty
):
    _dataset(project, count=5)
    release = services.release_request(
        project=project,
        user=manager,
        options=services.release_options(project=project, formats=["jsonl"]),
        enqueue=False,
    )

    def cancel_midway(done, total, stage):
        if stage == "writing files":
            services.release_cancel(release=release, by=manager)

    built = services.release_build(release_id=release.pk, on_progress=cancel_midway)
    assert built.status == ReleaseStatus.FAILED and built.stage == services.CANCELLED
    assert ImageSplit.objects.filter(release=release).count() == 0
    assert releases_root_empty()


@pytest.fixture
def releases_root_empty(settings):
    def empty() -> bool:
        root = settings.CONCORD_RELEASES_ROOT
        return not root.exists() or not any(p.is_file() for p in root.rglob("*"))

    return empty
