"""Training runs whose worker died: found by beat's recovery, sent again to the training queue
(the run resumes from its last stored epoch), and failed with the reason after the last try;
a redelivery while a run is alive does nothing; a real worker killed mid-run."""

import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import app
from config.jobs import job_finish, job_start
from datasets.models import JobLease
from tests.datasets.curation.test_dedup_worker import BOOT_SECONDS
from tests.datasets.releases.test_release_recovery import STALE, _stop, _wait, _worker
from tests.training.core.synthetic import tiny_config
from training.registry import services
from training.registry.models import ModelVersion, VersionStatus

EPOCHS = 30


def _take(queue: str) -> int:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_declare(queue, durable=True, auto_delete=False)
        return channel.queue_purge(queue) or 0


@pytest.mark.django_db
def test_a_dead_training_run_is_sent_again_then_failed_with_the_reason(project, release, settings):
    version = ModelVersion.objects.create(
        project=project, release=release, status=VersionStatus.TRAINING
    )
    _take("training")
    stale = timezone.now() - timedelta(seconds=settings.CONCORD_JOB_STALE_SECONDS["*"] + 1)
    for attempt in range(1, settings.CONCORD_JOB_MAX_RUNS + 1):
        lease = job_start(services.TRAIN, str(version.pk))
        # A redelivery while this run is alive trains nothing.
        assert services.model_train_leased(version_id=version.pk).status == VersionStatus.TRAINING
        assert services.trainings_recover() == []
        JobLease.objects.filter(pk=lease.pk).update(heartbeat_at=stale)
        assert services.trainings_recover() == [version.pk]
        version.refresh_from_db()
        if attempt < settings.CONCORD_JOB_MAX_RUNS:
            assert version.status == VersionStatus.TRAINING
            assert _take("training") == 1  # sent again, to the training queue
        job_finish(lease, version.pk, what="test")  # the dead run's late end changes nothing
    assert version.status == VersionStatus.FAILED
    assert version.error == services.TRAIN_GAVE_UP.format(runs=settings.CONCORD_JOB_MAX_RUNS)
    assert _take("training") == 0


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_training_is_noticed_and_the_model_trained_once(
    project, release, media_storage, settings, tmp_path
):
    """Issue 18's proof for training: a real worker killed with SIGKILL after its first stored
    epoch; beat's recovery sends the run again, another worker resumes it from that epoch, and
    the project ends with one ready model, each epoch once, and no scratch folder left."""
    settings.CONCORD_JOB_STALE_SECONDS = {**settings.CONCORD_JOB_STALE_SECONDS, "*": STALE}
    # Enough epochs that the kill lands between the first stored one and the end.
    settings.CONCORD_TRAIN_CONFIG = tiny_config(tmp_path, epochs=EPOCHS, patience=EPOCHS).to_dict()
    _take("training")
    log = tmp_path / "worker.log"
    first = _worker(media_storage, tmp_path, log, queues="training")
    try:
        version = services.model_request(project=project, release=release)
        _wait(
            lambda: ModelVersion.objects.get(pk=version.pk).epochs_done > 0,
            first,
            log,
            BOOT_SECONDS,
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    version.refresh_from_db()
    assert version.status == VersionStatus.TRAINING, "the kill must land in the middle"
    assert 0 < version.epochs_done < EPOCHS
    assert services.trainings_recover() == []  # its heartbeat is still fresh
    runs = tmp_path / "worker-scratch" / "runs" / project.slug / str(version.pk)
    assert runs.is_dir(), "the dead run left its scratch folder"

    killed_at = time.monotonic()
    second = _worker(media_storage, tmp_path, log, queues="training")
    try:
        _wait(lambda: services.trainings_recover() == [version.pk], second, log, STALE + 10)
        noticed = time.monotonic() - killed_at
        _wait(
            lambda: (
                ModelVersion.objects.get(pk=version.pk).status
                in (VersionStatus.READY, VersionStatus.FAILED)
            ),
            second,
            log,
            BOOT_SECONDS + 60,
        )
    finally:
        _stop(second)
    print(f"dead training run noticed after {noticed:.1f} s")
    assert noticed < STALE + 10
    version.refresh_from_db()
    assert (version.status, version.error) == (VersionStatus.READY, "")
    # One model: this version, promoted, each epoch once in its history.
    assert list(ModelVersion.objects.filter(project=project)) == [version]
    assert version.is_promoted and version.epochs_done == EPOCHS
    assert [record["epoch"] for record in version.history] == list(range(1, EPOCHS + 1))
    lease = JobLease.objects.get(name=services.TRAIN, key=str(version.pk))
    assert (lease.runs, lease.heartbeat_at, lease.worker, lease.error) == (0, None, "", "")
    stored = settings.CONCORD_MODELS_ROOT / project.slug / str(version.pk)
    assert {path.name for path in stored.iterdir()} == {
        *services.CHECKPOINT_FILES,
        *services.RUN_FILES,
    }
    assert not runs.exists(), "the resumed run removed the dead one's scratch folder and its own"
