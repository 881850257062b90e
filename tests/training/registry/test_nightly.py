"""The nightly job on real projects: it cuts a release when there is none or the labels changed,
takes the newest one otherwise, and says plainly why it skips a project."""

import pytest

from datasets.ingest.services.uploads import caption_create
from datasets.models import Release, ReleaseStatus
from tests import factories
from training.registry import services
from training.registry.models import ModelVersion, VersionStatus

IMAGES = 12


def _captioned(project, *, count=IMAGES, source="coco", first_seed=0):
    """count images, each with one caption from ``source`` (a positive pair)."""
    for seed in range(first_seed, first_seed + count):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=f"a picture numbered {seed}", source=source)


@pytest.fixture
def trusted(project):
    """Captions from a trusted source are labelled positives without any judgment."""
    project.trusted_sources = ["coco"]
    project.save(update_fields=["trusted_sources", "updated_at"])
    return project


@pytest.mark.django_db
def test_nightly_cuts_a_first_release_trains_and_then_rests(trusted):
    _captioned(trusted)
    assert services.nightly_plan(project=trusted).action == services.NIGHTLY_CUT

    [outcome] = services.nightly_retrain()
    assert outcome.action == services.NIGHTLY_CUT
    assert outcome.reason == services.NIGHTLY_NO_RELEASE
    release = Release.objects.get(project=trusted)
    assert release.version == 1 and release.status == ReleaseStatus.READY
    assert outcome.release == release and outcome.version.release == release
    assert outcome.to_json() == {
        "project": trusted.slug,
        "action": "cut",
        "release": "v1",
        "version": outcome.version.pk,
        "reason": "no release yet",
    }

    version = services.model_train(version_id=outcome.version.pk)
    assert version.status == VersionStatus.READY, version.error
    assert set(version.metrics) <= {"train", "val", "test"} and "train" in version.metrics

    # Nothing changed since v1 and v1 already has a model with this config: no new work.
    [again] = services.nightly_retrain()
    assert again.action == services.NIGHTLY_SKIP and again.version is None
    assert again.reason == services.NIGHTLY_DONE.format(pk=version.pk, release="v1")
    assert Release.objects.filter(project=trusted).count() == 1
    assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_nightly_cuts_a_new_release_when_labels_changed(trusted):
    _captioned(trusted)
    first = services.nightly_project(project=trusted)
    services.model_train(version_id=first.version.pk)

    _captioned(trusted, count=2, first_seed=100)  # new pairs since v1
    plan = services.nightly_plan(project=trusted)
    assert plan.action == services.NIGHTLY_CUT
    assert plan.reason == services.NIGHTLY_CHANGED.format(release="v1")
    outcome = services.nightly_project(project=trusted)
    assert outcome.release.version == 2 and outcome.release.status == ReleaseStatus.READY
    assert outcome.version.release == outcome.release
    assert outcome.release.counts["pairs"] > first.release.counts["pairs"]


@pytest.mark.django_db
def test_nightly_takes_the_newest_release_when_nothing_changed(trusted, settings):
    _captioned(trusted)
    cut = services.nightly_project(project=trusted)
    ModelVersion.objects.filter(pk=cut.version.pk).update(status=VersionStatus.FAILED)
    # The failed run does not count: the unchanged v1 is trained on again, no release cut.
    plan = services.nightly_plan(project=trusted)
    assert (plan.action, plan.release) == (services.NIGHTLY_TRAIN, cut.release)
    outcome = services.nightly_project(project=trusted)
    assert outcome.action == services.NIGHTLY_TRAIN and outcome.release == cut.release
    assert Release.objects.filter(project=trusted).count() == 1

    # While that run is queued, the next night leaves the project alone.
    busy = services.nightly_project(project=trusted)
    assert busy.action == services.NIGHTLY_SKIP
    assert busy.reason == services.NIGHTLY_BUSY.format(
        pk=outcome.version.pk, release="v1", status="queued"
    )

    # A different default config is new work on the same release.
    ModelVersion.objects.filter(pk=outcome.version.pk).update(status=VersionStatus.READY)
    settings.CONCORD_TRAIN_CONFIG = {**settings.CONCORD_TRAIN_CONFIG, "epochs": 2}
    assert services.nightly_plan(project=trusted).action == services.NIGHTLY_TRAIN


@pytest.mark.django_db
def test_nightly_skips_a_project_without_pairs_and_cuts_nothing(project):
    factories.image(project=project, seed=1)  # an image, but no caption: no pair
    [outcome] = services.nightly_retrain()
    assert outcome.action == services.NIGHTLY_SKIP
    assert outcome.reason == services.NIGHTLY_NO_PAIRS
    assert not Release.objects.exists() and not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_nightly_skips_a_release_without_labelled_positives_once(project):
    # Captions from an untrusted source wait for judgments: the release has no labelled pair.
    _captioned(project, count=4, source="api")
    outcome = services.nightly_project(project=project)
    assert outcome.action == services.NIGHTLY_SKIP
    assert outcome.release.version == 1 and outcome.release.status == ReleaseStatus.READY
    assert outcome.reason == services.NIGHTLY_NO_POSITIVES.format(release="v1")
    assert not ModelVersion.objects.exists()
    # The next night does not cut the same empty release again.
    again = services.nightly_project(project=project)
    assert again.action == services.NIGHTLY_SKIP and again.reason == outcome.reason
    assert Release.objects.filter(project=project).count() == 1


@pytest.mark.django_db
def test_nightly_reports_a_bad_config_instead_of_failing(trusted, settings):
    _captioned(trusted)  # 12 images: with 4, a split now and then had no positive in train
    services.nightly_project(project=trusted)
    ModelVersion.objects.update(status=VersionStatus.FAILED)
    settings.CONCORD_TRAIN_CONFIG = {"encoder": "clip"}
    plan = services.nightly_plan(project=trusted)
    assert plan.action == services.NIGHTLY_SKIP
    assert plan.reason.startswith("CONCORD_TRAIN_CONFIG is not a valid training config")
