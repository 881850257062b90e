import io
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from config.celery import app
from datasets.ingest.services.thumbnails import thumbnails_make
from tests import factories


@pytest.mark.django_db
def test_thumbnails_are_small_and_made_once(project):
    images = [factories.image(project=project, seed=seed) for seed in range(3)]
    ids = [image.pk for image in images]
    assert thumbnails_make(image_ids=ids) == 3
    assert thumbnails_make(image_ids=[*ids, 999_999]) == 0  # re-run, and a vanished id
    for image in images:
        image.refresh_from_db()
        with default_storage.open(image.thumbnail.name) as handle:
            thumb = PILImage.open(io.BytesIO(handle.read()))
        assert thumb.format == "JPEG" and max(thumb.size) <= 320


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_makes_thumbnails_after_commit(manager, annotator):
    """Upload → commit → message on the real broker → a worker thread makes the thumbnail."""
    project = factories.project(manager=manager, name="Thumbs")
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        image = factories.image(project=project, seed=11)  # enqueues on commit
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            image.refresh_from_db()
            if image.thumbnail:
                break
            time.sleep(0.2)
    assert image.thumbnail, "the worker did not make the thumbnail within 30 s"
    assert default_storage.exists(image.thumbnail.name)
