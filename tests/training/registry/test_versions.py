import json
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.db import IntegrityError, transaction

from config.celery import app
from training.registry import services
from training.registry.models import ModelVersion, VersionStatus
from training.registry.tasks import nightly_retrain, train_model


@pytest.mark.django_db
def test_a_run_trains_evaluates_and_promotes(project, release, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        version = services.model_request(project=project)
    assert version.status == VersionStatus.QUEUED and version.release == release
    assert version.config["encoder"] == "scratch" and version.config["epochs"] == 1
    assert len(callbacks) == 1  # the task is sent only once the row is committed

    version = services.model_train(version_id=version.pk)
    assert version.status == VersionStatus.READY, version.error
    assert version.is_promoted and version.finished_at is not None
    assert version.epochs_done == 1
    assert set(version.metrics) == {"train", "val", "test"}
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "f1", "ap"):
        assert 0.0 <= version.metrics["test"][key] <= 1.0
    assert version.metric_name == "rsum"
    assert version.metric_value == pytest.approx(version.metrics["val"]["rsum"])
    assert services.promoted_version(project=project) == version
    # A finished version is left alone when its message is delivered again.
    assert services.model_train(version_id=version.pk).checkpoint == version.checkpoint


@pytest.mark.django_db
def test_only_a_better_model_replaces_the_promoted_one(project, release):
    first = services.model_train(version_id=services.model_request(project=project).pk)
    assert first.is_promoted
    ModelVersion.objects.filter(pk=first.pk).update(metric_value=1e9)
    second = services.model_train(version_id=services.model_request(project=project).pk)
    assert second.status == VersionStatus.READY and not second.is_promoted
    ModelVersion.objects.filter(pk=first.pk).update(metric_value=-1.0)
    third = services.model_train(version_id=services.model_request(project=project).pk)
    assert third.is_promoted
    first.refresh_from_db()
    assert not first.is_promoted
    assert ModelVersion.objects.filter(project=project, is_promoted=True).count() == 1


@pytest.mark.django_db
def test_a_failed_run_leaves_the_promoted_model(project, release, monkeypatch):
    good = services.model_train(version_id=services.model_request(project=project).pk)
    assert good.is_promoted

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("training.core.train.train", broken)
    bad = services.model_train(version_id=services.model_request(project=project).pk)
    assert bad.status == VersionStatus.FAILED and "out of memory" in bad.error
    assert not bad.is_promoted and bad.finished_at is not None
    assert services.promoted_version(project=project) == good


@pytest.mark.django_db
def test_one_promoted_model_per_project(project, release):
    ModelVersion.objects.create(project=project, release=release, is_promoted=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(project=project, release=release, is_promoted=True)


@pytest.mark.django_db
def test_requests_need_a_ready_release_and_a_valid_config(project, release):
    release.delete()
    with pytest.raises(ValueError, match="no ready release"):
        services.model_request(project=project)


@pytest.mark.django_db
def test_bad_config_is_refused(project, release):
    with pytest.raises(ValueError, match="encoder"):
        services.model_request(project=project, config={"encoder": "clip"})


def test_training_is_routed_to_its_own_queue_and_scheduled_nightly(settings):
    assert app.amqp.router.route({}, train_model.name)["queue"].name == "training"
    entry = settings.CELERY_BEAT_SCHEDULE["nightly-retrain"]
    assert entry["task"] == nightly_retrain.name
    assert entry["schedule"].hour == {settings.CONCORD_NIGHTLY_HOUR}


@pytest.mark.django_db
def test_nightly_skips_projects_without_release_and_busy_ones(project, manager, release):
    from tests import factories

    factories.project(manager=manager, name="Empty")
    first = services.nightly_retrain()
    assert [(o.project.name, o.action) for o in first] == [
        ("Street scenes", services.NIGHTLY_TRAIN),
        ("Empty", services.NIGHTLY_SKIP),
    ]
    assert first[0].version.release == release
    assert first[1].reason == services.NIGHTLY_NO_PAIRS
    # Still queued: not requested twice.
    assert [o.version for o in services.nightly_retrain()] == [None, None]
    assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_a_run_records_its_training_log_and_the_confusion_at_the_threshold(
    project, release, settings
):
    settings.CONCORD_TRAIN_CONFIG = {**settings.CONCORD_TRAIN_CONFIG, "epochs": 2}
    version = services.model_train(version_id=services.model_request(project=project).pk)
    assert version.status == VersionStatus.READY, version.error
    assert [h["epoch"] for h in version.history] == [1, 2]
    log = services.run_file(version=version, name="log.jsonl").decode()
    assert version.history == [json.loads(line) for line in log.splitlines()]
    for record in version.history:
        assert record["train"]["loss"] > 0 and 0 <= record["val"]["i2t_r1"] <= 1
    assert any(record["best"] for record in version.history)

    val, test = version.metrics["val"], version.metrics["test"]
    assert val["threshold_source"] == test["threshold_source"] == "val"
    assert test["threshold"] == val["threshold"]
    for split in (val, test):
        counts = split["tp"] + split["fp"] + split["fn"] + split["tn"]
        assert counts == split["num_labelled_pairs"]
        assert split["precision"] == pytest.approx(split["tp"] / max(1, split["tp"] + split["fp"]))


@pytest.mark.django_db
def test_a_resumed_run_keeps_the_epochs_logged_before_it_stopped(
    project, release, settings, tmp_path
):
    """A worker killed after epoch 1: the core left ``last.pt``, the row its first log record;
    the redelivered task resumes and ends with the whole log."""
    from training.core.config import TrainConfig
    from training.core.train import train

    settings.CONCORD_TRAIN_CONFIG = {**settings.CONCORD_TRAIN_CONFIG, "epochs": 2}
    version = services.model_request(project=project, enqueue=False)
    # The first epoch ran on another worker, which stored its checkpoints before it died.
    elsewhere = tmp_path / "other-worker"
    first_epoch = TrainConfig.from_dict({**version.config, "epochs": 1})
    stopped = train(
        first_epoch,
        settings.CONCORD_RELEASES_ROOT / release.directory,
        elsewhere,
        show_progress=False,
    )
    for name in services.CHECKPOINT_FILES:
        storages["models"].save(
            f"{services.checkpoint_prefix(version=version)}/{name}",
            ContentFile((elsewhere / name).read_bytes()),
        )
    ModelVersion.objects.filter(pk=version.pk).update(
        status=VersionStatus.TRAINING, epochs_done=1, history=stopped.history
    )

    version = services.model_train(version_id=version.pk)
    assert version.status == VersionStatus.READY, version.error
    assert [h["epoch"] for h in version.history] == [1, 2]
    assert version.history[0] == json.loads(json.dumps(stopped.history[0]))
    assert version.epochs_done == 2


@pytest.mark.django_db
def test_manage_py_train(project, release, capsys):
    call_command("train", project.slug, "--release", "v1")
    out = capsys.readouterr().out
    assert "(promoted)" in out and "test:" in out and "i2t_r1=" in out
    assert ModelVersion.objects.get().is_promoted


@pytest.mark.django_db(transaction=True)
def test_nightly_job_through_a_real_worker_promotes_a_model(project, release):
    """Beat's task on the default queue → a version per project → train_model on the training
    queue → a worker thread trains, evaluates and promotes."""
    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=30,
        queues=["default", "training"],
    ):
        nightly_retrain.delay()
        deadline = time.monotonic() + 90
        version = None
        while time.monotonic() < deadline:
            version = ModelVersion.objects.filter(project=project).first()
            if version is not None and version.status in (VersionStatus.READY, "failed"):
                break
            time.sleep(0.2)
    assert version is not None, "the worker did not run the nightly job"
    assert version.status == VersionStatus.READY, version.error
    assert version.is_promoted and version.release == release


@pytest.mark.django_db
def test_a_run_whose_last_batch_has_one_pair_trains(project, release, settings):
    """The synthetic release's train split has 24 positive pairs: with batches of 23 the lone
    last pair joins the first batch (this once raised IndexError, and with three or more batches
    silently replaced the first batch by the merged one)."""
    settings.CONCORD_TRAIN_CONFIG = {**settings.CONCORD_TRAIN_CONFIG, "batch_size": 23}
    version = services.model_train(version_id=services.model_request(project=project).pk)
    assert version.status == VersionStatus.READY, version.error


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "text_encoder"), [("en", "minilm"), ("zh", "use-m3"), ("hi", "char-ngram")]
)
def test_the_text_encoder_follows_the_project_language(
    project, release, settings, language, text_encoder
):
    project.language = language
    project.save()
    settings.CONCORD_TRAIN_CONFIG = {}

    version = services.model_request(project=project, enqueue=False)

    assert version.config["encoder"] == "pretrained"
    assert version.config["text_encoder"] == text_encoder
    # An explicit choice wins over the language.
    chosen = services.model_request(
        project=project, config={"text_encoder": "char-ngram"}, enqueue=False
    )
    assert chosen.config["text_encoder"] == "char-ngram"
