import io
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from datasets.ingest.captions import CaptionError
from datasets.ingest.images import check_image
from datasets.ingest.services.jobs import import_job_run, upload_job_create
from datasets.ingest.services.uploads import (
    DUPLICATE_IMAGE,
    Provenance,
    _image_store,
    caption_create,
    image_ingest,
)
from datasets.models import Image, Pair, PairKind, Source
from tests import factories

pytestmark = pytest.mark.django_db


def _files_on_disk(media) -> list[str]:
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())


def test_accepted_image_is_stored_with_provenance(project, manager, media_storage):
    data = factories.image_bytes(fmt="PNG", size=(30, 20))
    result = image_ingest(
        project=project,
        data=data,
        provenance=Provenance(
            source=Source.UPLOAD,
            original_name="holiday.png",
            source_url="http://example.org/holiday.png",
            license_name="CC BY 4.0",
            license_url="https://creativecommons.org/licenses/by/4.0/",
        ),
        uploaded_by=manager,
    )
    assert result.status == "accepted"
    image = Image.objects.get(pk=result.image_id)
    assert (image.width, image.height, image.format) == (30, 20, "PNG")
    assert image.original_name == "holiday.png" and image.uploaded_by == manager
    assert image.license_name == "CC BY 4.0"
    assert default_storage.open(image.file.name).read() == data
    assert _files_on_disk(media_storage) == [image.file.name]


def test_same_content_is_a_duplicate_in_one_project_but_not_across_projects(project, manager):
    data = factories.image_bytes(seed=7)
    provenance = Provenance(source=Source.UPLOAD, original_name="x.jpg")
    first = image_ingest(project=project, data=data, provenance=provenance)
    again = image_ingest(project=project, data=data, provenance=provenance)
    assert (again.status, again.reason, again.image_id) == (
        "duplicate",
        DUPLICATE_IMAGE,
        first.image_id,
    )
    other = factories.project(manager=manager, name="Other")
    assert image_ingest(project=other, data=data, provenance=provenance).status == "accepted"


def test_losing_a_race_leaves_no_orphan_file(project, media_storage):
    """The unique constraint catches a concurrent identical upload; the loser's file is removed."""
    data = factories.image_bytes(seed=3)
    winner = image_ingest(
        project=project, data=data, provenance=Provenance(source=Source.UPLOAD, original_name="a")
    )
    before = _files_on_disk(media_storage)
    # Skip the service's pre-check, as a request that checked just before the winner committed.
    result = _image_store(
        project=project,
        checked=check_image(data, max_bytes=2**30, max_pixels=10**9),
        provenance=Provenance(source=Source.UPLOAD, original_name="b"),
        uploaded_by=None,
        make_thumbnail=False,
    )
    assert (result.status, result.image_id) == ("duplicate", winner.image_id)
    assert _files_on_disk(media_storage) == before
    assert Image.objects.count() == 1


def test_rejected_file_leaves_nothing_behind(project, media_storage):
    result = image_ingest(
        project=project,
        data=b"GIF89a not really",
        provenance=Provenance(source=Source.UPLOAD, original_name="bad.jpg"),
    )
    assert result.status == "rejected" and result.reason
    assert Image.objects.count() == 0
    assert _files_on_disk(media_storage) == []


def _upload(project, files, *, inline=True):
    job = upload_job_create(
        project=project,
        files=[ContentFile(data, name=name) for name, data in files],
        source="upload",
        created_by=None,
    )
    return job if not job.is_live else import_job_run(job_id=job.pk)


def test_batch_upload_with_a_bad_file_keeps_the_good_ones(project):
    job = _upload(project, [("ok.jpg", factories.image_bytes()), ("broken.jpg", b"\xff\xd8broken")])
    assert [r.outcome for r in job.rows.order_by("position")] == ["added", "refused"]
    assert project.images.count() == 1


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_zip_upload_is_ingested_member_by_member(project):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photos/one.jpg", factories.image_bytes(seed=1))
        archive.writestr("photos/two.webp", factories.image_bytes(fmt="WEBP", seed=2))
        archive.writestr("photos/one-again.jpg", factories.image_bytes(seed=1))
        archive.writestr("photos/one.jpg", factories.image_bytes(seed=1))  # the same name again
        archive.writestr("notes.txt", b"hello")
        archive.writestr("../evil.jpg", factories.image_bytes(seed=3))
    job = _upload(project, [("batch.zip", buffer.getvalue())])
    assert [(r.where, r.outcome) for r in job.rows.order_by("position")] == [
        ("batch.zip: photos/one.jpg", "added"),
        ("batch.zip: photos/two.webp", "added"),
        ("batch.zip: photos/one-again.jpg", "merged"),
        ("batch.zip: photos/one.jpg", "present"),
        ("batch.zip: notes.txt", "refused"),
        ("batch.zip: ../evil.jpg", "refused"),
    ]
    assert set(project.images.values_list("source", flat=True)) == {Source.ZIP}
    one = project.images.get(original_name="photos/one.jpg")
    assert list(one.extra_sources.values_list("original_name", flat=True)) == [
        "photos/one-again.jpg"
    ]


def test_caption_create_normalises_and_makes_the_positive_pair(project):
    image = factories.image(project=project)
    caption = caption_create(image=image, text="  A  dog\u200b  runs ", source=Source.API)
    assert (caption.text_raw, caption.text) == ("  A  dog\u200b  runs ", "A dog runs")
    pair = Pair.objects.get(caption=caption)
    assert (pair.image_id, pair.kind) == (image.pk, PairKind.POSITIVE)
    with pytest.raises(CaptionError):
        caption_create(image=image, text="\u200b ", source=Source.API)
    assert image.captions.count() == 1
