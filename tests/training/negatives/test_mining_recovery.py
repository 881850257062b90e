"""Mining runs whose worker died: sent again to the training queue by beat's recovery, given up
with the reason after the last try; a delivery while a run is alive mines nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import app
from config.jobs import WORKER_LOST, job_start
from datasets.models import JobLease
from training.negatives.services import mining


def _take(queue: str) -> int:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_declare(queue, durable=True, auto_delete=False)
        return channel.queue_purge(queue) or 0


@pytest.mark.django_db
def test_a_dead_mining_run_is_sent_again_then_given_up(project, settings):
    _take("training")
    stale = timezone.now() - timedelta(seconds=settings.CONCORD_JOB_STALE_SECONDS["*"] + 1)
    for attempt in range(1, settings.CONCORD_JOB_MAX_RUNS + 1):
        lease = job_start(mining.MINE, str(project.pk))
        assert mining.mining_run_leased(project_id=project.pk) is None  # alive: nothing mined
        assert mining.minings_recover() == []
        JobLease.objects.filter(pk=lease.pk).update(heartbeat_at=stale)
        assert mining.minings_recover() == [project.pk]
        lease.refresh_from_db()
        if attempt < settings.CONCORD_JOB_MAX_RUNS:
            assert lease.error == WORKER_LOST
            assert _take("training") == 1  # sent again, to the training queue
    assert lease.error == mining.MINING_GAVE_UP.format(runs=settings.CONCORD_JOB_MAX_RUNS)
    assert (lease.pending, lease.heartbeat_at) == (False, None)
    assert _take("training") == 0
