"""Mining runs whose worker died: sent again to the training queue by beat's recovery, given up
with the reason after the last try; a delivery while a run is alive mines nothing; a real
worker killed mid-run."""

import os
import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import ChallengeOption, Task, TaskKind
from config.celery import app
from config.jobs import WORKER_LOST, job_request_now, job_start
from datasets.models import Caption, Image, JobLease, Pair, PairKind, Project, Source
from tests import factories
from tests.datasets.curation.test_dedup_worker import BOOT_SECONDS
from tests.datasets.releases.test_release_recovery import STALE, _stop, _wait, _worker
from training.negatives.models import Proposal
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


IMAGES = 1500
PER_IMAGE = 2  # random proposals per image: one challenge item each (three options a bundle)


def _seed(project) -> None:
    """IMAGES images, each with one caption from a trusted source (a known positive, so every
    image gets challenge items), written in bulk: the worker's run, not the seeding, is slow."""
    Project.objects.filter(pk=project.pk).update(
        negatives_random_per_image=PER_IMAGE,
        negatives_text_edit_per_image=0,
        trusted_sources=[Source.API],
    )
    images = Image.objects.bulk_create(
        Image(
            project=project,
            file=f"images/{n:064x}.jpg",
            sha256=f"{n:064x}",
            width=64,
            height=48,
            format="jpeg",
            size_bytes=1000,
            source=Source.UPLOAD,
        )
        for n in range(IMAGES)
    )
    captions = Caption.objects.bulk_create(
        Caption(image=image, text_raw=f"scene number {n}", text=f"scene number {n}", source="api")
        for n, image in enumerate(images)
    )
    Pair.objects.bulk_create(
        Pair(image_id=caption.image_id, caption=caption, kind=PairKind.POSITIVE)
        for caption in captions
    )


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_mining_is_noticed_and_nothing_is_proposed_twice(
    manager, media_storage, settings, tmp_path
):
    """A real worker killed with SIGKILL while it bundles challenge items; beat's recovery sends
    the run again and another worker tops up: every image ends with its quota of proposals,
    each proposal in exactly one challenge item, and the job released."""
    settings.CONCORD_JOB_STALE_SECONDS = {**settings.CONCORD_JOB_STALE_SECONDS, "*": STALE}
    project = factories.project(manager=manager, name="Kill a mining run")
    _seed(project)
    _take("training")
    log = tmp_path / "worker.log"
    challenges = Task.objects.filter(project=project, kind=TaskKind.CHALLENGE)
    first = _worker(media_storage, tmp_path, log, queues="training")
    try:
        mining.mining_request(project=project)
        _wait(lambda: challenges.count() >= 50, first, log, BOOT_SECONDS)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert 0 < challenges.count() < IMAGES, "the kill must land in the middle"
    assert mining.mining_state(project=project).status == "running"
    assert mining.minings_recover() == []  # its heartbeat is still fresh

    killed_at = time.monotonic()
    second = _worker(media_storage, tmp_path, log, queues="training")
    try:
        _wait(lambda: mining.minings_recover() == [project.pk], second, log, STALE + 10)
        noticed = time.monotonic() - killed_at
        _wait(
            lambda: mining.mining_state(project=project).status in ("done", "failed"),
            second,
            log,
            BOOT_SECONDS + 60,
        )
    finally:
        _stop(second)
    print(f"dead mining run noticed after {noticed:.1f} s")
    assert noticed < STALE + 10
    state = mining.mining_state(project=project)
    assert (state.status, state.error, state.runs) == ("done", "", 0)  # no deaths left
    # Nothing doubled: each image its quota, each proposal in one challenge item, one item an
    # image.
    proposals = Proposal.objects.filter(project=project)
    per_image = Counter(proposals.values_list("pair__image_id", flat=True))
    assert len(per_image) == IMAGES and set(per_image.values()) == {PER_IMAGE}
    options = list(
        ChallengeOption.objects.filter(task__project=project, is_check=False).values_list(
            "pair_id", flat=True
        )
    )
    assert len(options) == len(set(options)) == proposals.count()
    assert set(options) == set(proposals.values_list("pair_id", flat=True))
    assert challenges.count() == IMAGES
    assert len(set(challenges.values_list("image_id", flat=True))) == IMAGES


@pytest.mark.django_db
def test_runs_that_finished_do_not_count_as_deaths(project, settings):
    # QA: two finished "Mine now" runs, then one kill, failed the run "4 times in a row".
    _take("training")
    for _ in range(settings.CONCORD_JOB_MAX_RUNS):
        job_request_now(mining.MINE, str(project.pk), project.pk, what="mining")
        assert mining.mining_run_leased(project_id=project.pk) is not None  # ran to its end
    lease = job_start(mining.MINE, str(project.pk))
    stale = timezone.now() - timedelta(seconds=settings.CONCORD_JOB_STALE_SECONDS["*"] + 1)
    JobLease.objects.filter(pk=lease.pk).update(heartbeat_at=stale)
    _take("training")
    assert mining.minings_recover() == [project.pk]
    lease.refresh_from_db()
    assert (lease.error, lease.runs, lease.pending) == (WORKER_LOST, 1, True)  # one death
    assert _take("training") == 1  # sent again, not given up


@pytest.mark.django_db
def test_a_new_request_after_giving_up_counts_deaths_afresh(project, settings):
    _take("training")
    stale = timezone.now() - timedelta(seconds=settings.CONCORD_JOB_STALE_SECONDS["*"] + 1)
    for _ in range(settings.CONCORD_JOB_MAX_RUNS):
        lease = job_start(mining.MINE, str(project.pk))
        JobLease.objects.filter(pk=lease.pk).update(heartbeat_at=stale)
        mining.minings_recover()
    lease.refresh_from_db()
    assert lease.error.startswith("Its worker stopped answering")  # given up
    job_request_now(mining.MINE, str(project.pk), project.pk, what="mining")  # Mine now
    lease = job_start(mining.MINE, str(project.pk))
    JobLease.objects.filter(pk=lease.pk).update(heartbeat_at=stale)
    assert mining.minings_recover() == [project.pk]
    lease.refresh_from_db()
    assert (lease.error, lease.runs) == (WORKER_LOST, 1)
