"""Training runs whose worker died: found by beat's recovery, sent again to the training queue
(the run resumes from its last stored epoch), and failed with the reason after the last try;
a redelivery while a run is alive does nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import app
from config.jobs import job_finish, job_start
from datasets.models import JobLease
from training.registry import services
from training.registry.models import ModelVersion, VersionStatus


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
