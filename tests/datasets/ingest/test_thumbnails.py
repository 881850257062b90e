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


def _png16(values) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(values, dtype=np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_16_bit_greys_are_scaled_into_the_thumbnail_not_clipped_to_white():
    """A 16-bit PNG (mode I;16) from 0 to 65535: the thumbnail runs from black to white through
    the greys, in order, as the file does; a uniform 30000 is a mid grey, not white."""
    import numpy as np

    from datasets.ingest.images import to_8bit
    from datasets.ingest.services.thumbnails import thumbnail_bytes

    gradient = np.tile(np.linspace(0, 65535, 640).astype(np.uint16), (80, 1))
    thumb = PILImage.open(io.BytesIO(thumbnail_bytes(_png16(gradient), size=320)))
    row = [thumb.getpixel((x, 2)) for x in range(0, 320, 40)]
    grey = [value if isinstance(value, int) else value[0] for value in row]
    assert grey == sorted(grey) and grey[0] <= 3 and 100 < grey[4] < 160, grey
    assert thumb.getpixel((319, 2)) in (255, (255, 255, 255), 254, (254, 254, 254))
    flat = PILImage.open(io.BytesIO(thumbnail_bytes(_png16(np.full((20, 20), 30000)), size=320)))
    assert abs(np.asarray(flat.convert("L")).astype(int) - 117).max() <= 3
    # The modes 16-bit files open as, and float pictures (scaled by their own range).
    for mode, values, expected in [
        ("I", [[0, 32768, 65535]], [0, 128, 255]),
        ("I;16", [[0, 257, 65535]], [0, 1, 255]),
        ("F", [[-1.0, 0.0, 1.0]], [0, 128, 255]),
    ]:
        picture = PILImage.fromarray(
            np.asarray(values, dtype={"F": np.float32}.get(mode, np.int32))
        )
        if mode == "I;16":
            picture = PILImage.fromarray(np.asarray(values, dtype=np.uint16))
        converted = to_8bit(picture)
        assert converted.mode == "L" and list(np.asarray(converted)[0]) == expected, mode
    rgb = PILImage.new("RGB", (2, 2), (10, 20, 30))
    assert to_8bit(rgb) is rgb


def test_a_very_long_strip_keeps_a_visible_thumbnail():
    """A 100×30000 image gave a 1×320 thumbnail: now its centre, at most 8 times longer than
    wide; ordinary shapes keep their whole picture and aspect."""
    from datasets.ingest.services.thumbnails import thumbnail_bytes

    def thumb(size):
        data = factories.image_bytes(fmt="PNG", size=size)
        return PILImage.open(io.BytesIO(thumbnail_bytes(data, size=320))).size

    assert thumb((100, 30000)) == (40, 320)
    assert thumb((30000, 100)) == (320, 40)
    assert thumb((640, 480)) == (320, 240)
    assert thumb((800, 100)) == (320, 40)  # exactly 8:1, not cropped
