"""A READY release whose directory holds the training tests' synthetic pairs table, and the tiny
scratch config, so a training run takes a second or two."""

from __future__ import annotations

import pytest
import torch
from django.utils import timezone

from datasets.models import Release, ReleaseStatus
from datasets.releases.exporters import write_manifest
from tests.training.core.synthetic import tiny_config, write_release


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def roots(settings, tmp_path):
    config = tiny_config(tmp_path, epochs=1).to_dict()
    settings.CONCORD_TRAIN_CONFIG = config
    return tmp_path


def ready_release(project, settings, *, version: int = 1) -> Release:
    """The synthetic release stored in the "releases" storage (a local folder in tests), with
    its manifest, as a build would leave it."""
    directory = f"{project.slug}/v{version}"
    write_manifest(directory=write_release(settings.CONCORD_RELEASES_ROOT / directory))
    return Release.objects.create(
        project=project,
        version=version,
        status=ReleaseStatus.READY,
        snapshot_at=timezone.now(),
        directory=directory,
        finished_at=timezone.now(),
    )


@pytest.fixture
def release(project, settings):
    return ready_release(project, settings)
