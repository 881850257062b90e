"""Cancel and Retry of training runs: from the Models page (managers only, 409 with the reason
when the status does not allow it), a message already on its way trains nothing, and a run
cancelled while it trains stops after its epoch with nothing of it kept."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from config.jobs import job_start
from config.storage import storage_walk, storage_write
from datasets.models import JobLease
from training.registry import services
from training.registry.models import ModelVersion, VersionStatus


def _url(name, project, version):
    return reverse(name, kwargs={"slug": project.slug, "pk": version.pk})


@pytest.mark.django_db
def test_cancel_and_retry_from_the_page(client, project, manager, annotator, release):
    version = services.model_request(project=project, release=release, enqueue=False)
    client.force_login(annotator)
    assert client.post(_url("model-cancel", project, version)).status_code == 403
    client.force_login(manager)
    page = client.get(reverse("models", args=[project.slug])).content.decode()
    assert "data-cancel" in page and "data-retry" not in page
    assert client.post(_url("model-retry", project, version)).status_code == 409

    assert client.post(_url("model-cancel", project, version)).status_code == 302
    version.refresh_from_db()
    assert (version.status, version.error) == (
        VersionStatus.CANCELLED,
        services.ERROR_CANCELLED.format(user=manager.username),
    )
    # The message already on its way finds it cancelled and trains nothing.
    assert services.model_train_leased(version_id=version.pk).status == VersionStatus.CANCELLED
    version.refresh_from_db()
    assert (version.epochs_done, version.checkpoint) == (0, "")
    page = client.get(reverse("models", args=[project.slug])).content.decode()
    assert "data-retry" in page and "Cancelled by manager." in page
    # A second cancel is refused with the reason, not a 500.
    refused = client.post(_url("model-cancel", project, version))
    assert refused.status_code == 409
    assert services.ERROR_NOT_CANCELLABLE.format(pk=version.pk, status="cancelled") in (
        refused.content.decode()
    )

    assert client.post(_url("model-retry", project, version)).status_code == 302
    version.refresh_from_db()
    assert (version.status, version.error) == (VersionStatus.QUEUED, "")
    assert services.model_train_leased(version_id=version.pk).status == VersionStatus.READY
    assert client.post(_url("model-retry", project, version)).status_code == 409
    assert client.post(_url("model-cancel", project, version)).status_code == 409


@pytest.mark.django_db
def test_a_run_cancelled_while_it_trains_stops_and_keeps_nothing(
    project, manager, release, settings
):
    settings.CONCORD_TRAIN_CONFIG = {**settings.CONCORD_TRAIN_CONFIG, "epochs": 4, "patience": 4}
    version = services.model_request(project=project, release=release, enqueue=False)
    lease = job_start(services.TRAIN, str(version.pk))
    epochs, stopping = [], []

    def cancel_after_the_first(record):
        epochs.append(record["epoch"])
        if record["epoch"] == 1:
            services.model_cancel(version=version, by=manager)
            # QA: the card said "Queued" while the old run still trained: it says Cancelling…
            # and Retry waits until the worker has stopped.
            cancelled = ModelVersion.objects.get(pk=version.pk)
            stopping.append(services.model_stopping(version=cancelled))
            with pytest.raises(services.TrainingRefused):
                services.model_retry(version=cancelled)

    ended = services.model_train(
        version_id=version.pk, lease=lease, on_epoch=cancel_after_the_first
    )
    assert epochs == [1], "it stops after the epoch it was in"
    assert stopping == [True] and not services.model_stopping(version=ended)
    assert ended.status == VersionStatus.CANCELLED and not ended.is_promoted
    assert (ended.epochs_done, ended.history, ended.checkpoint) == (0, [], "")
    models = settings.CONCORD_MODELS_ROOT / project.slug / str(version.pk)
    assert not models.exists() or not any(models.iterdir()), "its checkpoints were deleted"
    runs = settings.CONCORD_SCRATCH_DIR / "runs" / project.slug / str(version.pk)
    assert not runs.exists()
    lease = JobLease.objects.get(pk=lease.pk)
    assert (lease.heartbeat_at, lease.worker) == (None, "")

    # Retried, it trains afresh to the end.
    services.model_retry(version=version)
    ended = services.model_train_leased(version_id=version.pk)
    assert ended.status == VersionStatus.READY and ended.epochs_done == 4
    assert [record["epoch"] for record in ended.history] == [1, 2, 3, 4]
    assert ModelVersion.objects.filter(project=project).count() == 1


@pytest.mark.django_db
def test_a_run_cancelled_as_it_finishes_is_never_ready_nor_promoted(project, manager, release):
    version = services.model_request(project=project, release=release, enqueue=False)

    def cancel_at_the_last(record):
        services.model_cancel(version=version, by=manager)

    # One epoch: the cancel lands after the last one, before the evaluation's promotion.
    ended = services.model_train(version_id=version.pk, on_epoch=cancel_at_the_last)
    assert ended.status == VersionStatus.CANCELLED and not ended.is_promoted
    assert services.promoted_version(project=project) is None


def _stored(version) -> list[str]:
    return sorted(storage_walk(alias="models", prefix=services.checkpoint_prefix(version=version)))


@pytest.mark.django_db
def test_cancelling_a_run_whose_worker_died_deletes_its_checkpoints(
    project, manager, release, settings
):
    # QA: a worker killed at epoch 3-8, then Cancel: best.pt, last.pt and log.jsonl stayed.
    version = services.model_request(project=project, release=release, enqueue=False)
    prefix = services.checkpoint_prefix(version=version)
    lease = job_start(services.TRAIN, str(version.pk))
    ModelVersion.objects.filter(pk=version.pk).update(status=VersionStatus.TRAINING, epochs_done=3)
    for name in ("best.pt", "last.pt", "log.jsonl"):  # what the dead run had stored
        storage_write(alias="models", name=f"{prefix}/{name}", data=b"x")
    stale = settings.CONCORD_JOB_STALE_SECONDS["*"] + 1
    JobLease.objects.filter(pk=lease.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=stale)
    )

    version = services.model_cancel(version=version, by=manager)
    assert version.status == VersionStatus.CANCELLED
    assert _stored(version) == []
    version.refresh_from_db()
    assert (version.epochs_done, version.history) == (0, [])


@pytest.mark.django_db
def test_cancelling_a_run_a_live_worker_holds_leaves_the_deleting_to_it(project, manager, release):
    version = services.model_request(project=project, release=release, enqueue=False)
    prefix = services.checkpoint_prefix(version=version)
    job_start(services.TRAIN, str(version.pk))  # alive: its next check deletes what it stored
    ModelVersion.objects.filter(pk=version.pk).update(status=VersionStatus.TRAINING)
    storage_write(alias="models", name=f"{prefix}/last.pt", data=b"x")
    services.model_cancel(version=version, by=manager)
    assert _stored(version) == [f"{prefix}/last.pt"]


@pytest.mark.django_db
def test_train_now_twice_queues_one_run(client, project, manager, release):
    # QA: four POSTs of "Train now" (a double click) queued four identical versions.
    client.force_login(manager)
    for _ in range(3):
        assert client.post(reverse("models", args=[project.slug])).status_code == 302
    versions = list(ModelVersion.objects.filter(project=project))
    assert len(versions) == 1 and versions[0].status == VersionStatus.QUEUED
    page = client.get(reverse("models", args=[project.slug])).content.decode()
    assert "already queued" in page
    # Other settings, or once the run is no longer queued or training, make a new version.
    other = services.model_request(project=project, release=release, config={"epochs": 2})
    assert other.pk != versions[0].pk
    services.model_cancel(version=versions[0], by=manager)
    again = services.model_request(project=project, release=release, enqueue=False)
    assert again.pk not in (versions[0].pk, other.pk)


@pytest.mark.django_db
def test_a_get_on_an_action_url_says_to_use_the_button(client, project, manager, release):
    # QA: GET on cancel/retry gave 405 with an empty body, a blank page in the browser.
    from tests.datasets.ingest.test_import_cancel import _job

    version = services.model_request(project=project, release=release, enqueue=False)
    job = _job(project, manager, rows=1)
    client.force_login(manager)
    urls = [
        _url("model-cancel", project, version),
        _url("model-retry", project, version),
        reverse("mining-cancel", kwargs={"slug": project.slug}),
        reverse("mining-retry", kwargs={"slug": project.slug}),
        reverse("import-cancel", kwargs={"slug": project.slug, "job_id": job.pk}),
        reverse("import-retry", kwargs={"slug": project.slug, "job_id": job.pk}),
        reverse("agreement-suspend", kwargs={"slug": project.slug, "user_id": manager.pk}),
        reverse("agreement-reinstate", kwargs={"slug": project.slug, "user_id": manager.pk}),
    ]
    for url in urls:
        response = client.get(url)
        assert (response.status_code, response["Allow"]) == (405, "POST"), url
        page = response.content.decode()
        assert "data-method-not-allowed" in page and "Use the button" in page, url
        assert 'class="topbar' in page or "<nav" in page, url  # the site's layout
    version.refresh_from_db()
    assert version.status == VersionStatus.QUEUED  # nothing done
