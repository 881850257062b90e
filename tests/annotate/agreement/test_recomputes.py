"""Agreement recomputes that keep up: coalesced requests, one run at a time, incremental writes,
the button that queues and shows progress, and a real worker on the agreement queue."""

import subprocess
import time
from datetime import timedelta

import pytest
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from annotate.agreement.services.consensus import consensus_recompute
from annotate.agreement.services.recomputes import (
    RECOMPUTE,
    RECOMPUTE_FAILED,
    consensus_recompute_job,
    recompute_failure,
    recompute_progress,
    recompute_request,
    recomputes_recover,
)
from annotate.agreement.views import RECOMPUTE_QUEUED
from annotate.models import AgreementSnapshot, ItemLabel, Judgment, Task
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from config.celery import app
from config.jobs import WORKER_LOST, job_finish, job_request_now, job_running, job_start
from datasets.models import JobLease
from tests import factories
from tests.datasets.curation.test_dedup_worker import BOOT_SECONDS, _worker

QUEUE = "agreement"


def _take_messages() -> int:
    """Remove every message waiting on the agreement queue of the real broker; how many."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_declare(QUEUE, durable=True, auto_delete=False)
        return channel.queue_purge(QUEUE) or 0


def _crowd(project, count):
    users = []
    for number in range(count):
        user = factories.user(f"crowd{number}")
        factories.member(project=project, user=user, role="annotator")
        users.append(user)
    return users


def _answer(project, user, answer):
    lease = assignment_get(project=project, annotator=user, lookahead=0).current
    assert lease is not None
    return judgment_submit(lease=lease, answer=answer).judgment


def _lease(project) -> JobLease:
    return JobLease.objects.get(name=RECOMPUTE, key=str(project.pk))


@pytest.mark.django_db
def test_requests_coalesce_into_one_waiting_message(
    project, annotator, django_capture_on_commit_callbacks
):
    factories.verify_tasks(project=project, count=30, target=1)
    _take_messages()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(20):
            recompute_request(project_id=project.pk)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(25):  # every judgment asks (CONCORD_AGREEMENT_EVERY = 1)
            _answer(project, annotator, "match")
    assert _lease(project).pending
    assert _take_messages() == 1

    # A full recompute asked for while one waits rides on that message.
    with django_capture_on_commit_callbacks(execute=True):
        recompute_request(project_id=project.pk, full=True)
    assert _take_messages() == 0 and _lease(project).options == {"full": True}

    # Once the run starts, the next request queues the next run (votes during a run count).
    lease = job_start(RECOMPUTE, str(project.pk))
    assert lease.options == {"full": True} and not _lease(project).pending
    with django_capture_on_commit_callbacks(execute=True):
        _answer(project, annotator, "match")
        recompute_request(project_id=project.pk)
    assert _take_messages() == 1
    job_finish(lease, project.pk, what="test")
    assert _take_messages() == 0  # nothing more: the waiting one carries the new votes


@pytest.mark.django_db
def test_a_run_that_finds_another_running_leaves_its_work_to_it(project):
    _take_messages()
    first = job_start(RECOMPUTE, str(project.pk))
    assert job_start(RECOMPUTE, str(project.pk)) is None  # a second worker got a message
    assert consensus_recompute_job(project_id=project.pk) is False
    assert AgreementSnapshot.objects.count() == 0
    assert _lease(project).again
    job_finish(first, project.pk, what="test")
    lease = _lease(project)
    assert (lease.again, lease.pending, lease.heartbeat_at) == (False, True, None)
    assert _take_messages() == 1  # exactly one run more


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_sent_again_by_beat(project, settings):
    _take_messages()
    dead = job_start(RECOMPUTE, str(project.pk))
    assert recomputes_recover() == 0  # alive
    stale = settings.CONCORD_JOB_STALE_SECONDS[RECOMPUTE]
    JobLease.objects.filter(pk=dead.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=stale + 1)
    )
    assert recomputes_recover() == 1
    lease = _lease(project)
    assert (lease.error, lease.pending, lease.heartbeat_at) == (WORKER_LOST, True, None)
    assert _take_messages() == 1
    job_finish(dead, project.pk, what="test")  # the dead run cannot release the new one's claim
    assert _lease(project).error == WORKER_LOST
    assert consensus_recompute_job(project_id=project.pk) is True
    assert _lease(project).error == "" and AgreementSnapshot.objects.count() == 1


@pytest.mark.django_db
def test_a_request_whose_message_was_lost_is_sent_again_by_beat(project, settings):
    # QA: a worker killed within the delay took the delayed message with it; Redis hands it back
    # only after its visibility timeout (hours), and every request meanwhile merged into it.
    _take_messages()
    job_request_now(RECOMPUTE, str(project.pk), project.pk, what="test", options={"full": True})
    assert _take_messages() == 1  # the message goes with the killed worker
    assert recomputes_recover() == 0  # not yet overdue: it may be waiting out its delay
    assert _take_messages() == 0
    waited = settings.CONCORD_AGREEMENT_DELAY + settings.CONCORD_JOB_STALE_SECONDS[RECOMPUTE]
    JobLease.objects.filter(pk=_lease(project).pk).update(
        requested_at=timezone.now() - timedelta(seconds=waited + 1)
    )
    assert recomputes_recover() == 1
    assert _take_messages() == 1  # sent again, once
    assert recomputes_recover() == 0
    lease = _lease(project)
    assert (lease.pending, lease.options, lease.heartbeat_at) == (True, {"full": True}, None)
    assert consensus_recompute_job(project_id=project.pk) is True
    lease = _lease(project)
    assert (lease.pending, lease.progress["full"]) == (False, True)
    assert AgreementSnapshot.objects.count() == 1


@pytest.mark.django_db
def test_an_incremental_recompute_writes_only_the_items_whose_outcome_changed(project):
    """Dawid–Skene re-estimates every annotator on each run, so confidences of items nobody
    voted on drift: an incremental run leaves them, a full one rewrites them."""
    factories.verify_tasks(project=project, count=12, target=3)
    users = _crowd(project, 4)
    for number, user in enumerate(users[:3]):
        for item in range(10):
            # The third annotator disagrees on two items: reliabilities differ.
            wrong = number == 2 and item in (3, 7)
            _answer(project, user, "no_match" if wrong else "match")
    consensus_recompute(project=project, full=True)
    stamps = dict(ItemLabel.objects.values_list("pair_id", "updated_at"))
    confidences = dict(ItemLabel.objects.values_list("pair_id", "confidence"))
    answered = _answer(project, users[3], "no_match")

    consensus_recompute(project=project, full=False)
    after = dict(ItemLabel.objects.values_list("pair_id", "updated_at"))
    assert {pair for pair, stamp in after.items() if stamp != stamps[pair]} == {
        answered.task.pair_id
    }

    consensus_recompute(project=project, full=True)
    drifted = {
        pair
        for pair, confidence in ItemLabel.objects.values_list("pair_id", "confidence")
        if confidence != confidences[pair] and pair != answered.task.pair_id
    }
    assert drifted, "the test needs confidences that drift, or it proves nothing"


@pytest.mark.django_db
def test_the_button_queues_a_full_recompute_and_the_page_shows_its_progress(
    client, project, manager, annotator, django_capture_on_commit_callbacks
):
    factories.verify_tasks(project=project, count=3, target=1)
    _answer(project, annotator, "match")
    _take_messages()
    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(reverse("agreement-recompute", kwargs={"slug": project.slug}))
    assert page.status_code == 302
    assert AgreementSnapshot.objects.count() == 0, "nothing runs in the request"
    assert _take_messages() == 1 and _lease(project).options == {"full": True}

    url = reverse("agreement", kwargs={"slug": project.slug})
    html = client.get(url).content.decode()
    assert RECOMPUTE_QUEUED in html and 'data-recompute="waiting"' in html
    assert "?part=recompute" in html and 'hx-trigger="every 2s"' in html
    part = client.get(url, {"part": "recompute"}, headers={"HX-Request": "true"})
    assert part.content.decode().strip().startswith('<p class="muted recompute-status"')

    assert consensus_recompute_job(project_id=project.pk)  # what the worker does
    progress = recompute_progress(project=project)
    assert (progress.waiting, progress.running, progress.phase) == (False, False, "done")
    # Only the answered item gets a row: the two nobody answered stay unjudged.
    assert progress.written == 1 and progress.seconds is not None
    part = client.get(url, {"part": "recompute"}, headers={"HX-Request": "true"}).content.decode()
    assert 'data-recompute="idle"' in part and "1 item rewritten" in part
    assert "hx-trigger" not in part  # polling stops


@pytest.mark.django_db
def test_a_failed_run_is_said_in_words_on_the_page_never_as_the_raw_exception(
    client, project, manager
):
    """QA: the page read "ValueError: 6 judgments repeat an (item, annotator) pair; …". A run
    that raises keeps its exception for the log; the page says that it failed and what to do."""
    client.force_login(manager)
    with (
        pytest.raises(ValueError),
        job_running(RECOMPUTE, str(project.pk), project.pk, what="test run") as lease,
    ):
        assert lease is not None
        raise ValueError("6 judgments repeat an (item, annotator) pair; keep one judgment.")
    assert _lease(project).error.startswith("ValueError: ")  # kept as raised, for the log
    html = client.get(reverse("agreement", kwargs={"slug": project.slug})).content.decode()
    assert "ValueError" not in html and "repeat an (item" not in html
    expected = RECOMPUTE_FAILED.format(reason="an unexpected error in the computation")
    assert escape(expected) in html
    # Errors that are sentences already (a worker lost, a job given up) are shown as they are.
    assert recompute_failure(WORKER_LOST) == WORKER_LOST
    assert "database" in recompute_failure("OperationalError: server closed the connection")


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_keeps_labels_fresh_while_annotators_work(
    manager, media_storage, settings, tmp_path
):
    """Two annotators answer 40 items twice over while a real worker runs the recomputes they
    ask for: a handful of runs (not one per judgment), never more than one message waiting,
    the labels fresh soon after the last vote, every task handed out exactly as often as its
    target."""
    settings.CONCORD_AGREEMENT_DELAY = 0.5
    project = factories.project(manager=manager, name="Fresh labels")
    tasks = factories.verify_tasks(project=project, count=40, target=2)
    users = _crowd(project, 2)
    _take_messages()
    log = tmp_path / "worker.log"
    worker = _worker(QUEUE, media_storage, log)
    try:
        waiting_seen = 0
        for round_ in range(len(tasks)):
            for user in users:
                _answer(project, user, "match")
            waiting_seen = max(
                waiting_seen, JobLease.objects.filter(name=RECOMPUTE, pending=True).count()
            )
            time.sleep(0.05 if round_ else BOOT_SECONDS / 20)
        last = Judgment.objects.aggregate(last=Max("id"))["last"]
        deadline = time.monotonic() + BOOT_SECONDS
        while True:
            assert worker.poll() is None, log.read_text()
            snapshot = AgreementSnapshot.objects.order_by("-id").first()
            lease = JobLease.objects.filter(name=RECOMPUTE).first()
            if snapshot and snapshot.last_judgment_id == last and not lease.running:
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    lease.refresh_from_db()
    assert waiting_seen <= 1
    runs = AgreementSnapshot.objects.count()  # one snapshot a run
    assert 1 <= runs < 40, runs  # coalesced: not one per judgment
    assert (lease.error, lease.runs) == ("", 0)  # no deaths counted
    assert ItemLabel.objects.filter(project=project, status="agreed", label=1).count() == 40
    for task in Task.objects.filter(pk__in=[t.pk for t in tasks]):
        assert (task.target, task.judgment_count, task.lease_count) == (2, 2, 0)
