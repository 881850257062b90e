"""Import jobs through the real services, on the suite's database: merges keep every caption and
provenance, a row is atomic even when the database refuses it, a job resumes after its process
died without doubling or losing a row, and inputs only ever go through the storage API."""

import io
import json
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from PIL import Image as PILImage
from PIL import PngImagePlugin

from datasets.ingest.images import metadata_found
from datasets.ingest.selectors import job_rows_iter
from datasets.ingest.services import jobs
from datasets.ingest.services.jobs import (
    RUN_TASK,
    import_job_create,
    import_job_run,
    upload_job_create,
)
from datasets.ingest.services.thumbnails import thumbnails_make
from datasets.models import Caption, Image, ImageSource, ImportJob, ImportStatus, Pair
from tests import factories
from tests.datasets.ingest.corpus import zip_of

pytestmark = pytest.mark.django_db


def _manifest_job(project, user, manifest: str, images: dict[str, bytes], name="m.csv"):
    job = import_job_create(
        project=project,
        kind="manifest" if not name.endswith(".json") else "coco",
        manifest=ContentFile(manifest.encode(), name=name),
        images=[ContentFile(zip_of(list(images.items())), name="images.zip")],
        created_by=user,
    )
    return job


def _outcomes(job):
    return [(row.where, row.outcome) for row in job.rows.order_by("position")]


def test_identical_bytes_merge_with_every_caption_and_provenance(project, manager):
    same = factories.image_bytes(seed=9)
    job = _manifest_job(
        project,
        manager,
        "image,caption,license,source_url\n"
        "orig.jpg,a dog on grass,CC0,http://example.org/orig\n"
        "copy.jpg,a dog outside,CC BY,http://example.org/copy\n"
        "copy.jpg,a brown dog,,\n"
        "orig.jpg,a dog on grass,,\n",
        {"orig.jpg": same, "copy.jpg": same},
    )
    job = import_job_run(job_id=job.pk)
    assert _outcomes(job) == [
        ("line 2", "added"),
        ("line 3", "merged"),
        ("line 4", "merged"),
        ("line 5", "added"),  # the same text again on purpose: kept, as a second occurrence
    ]
    image = Image.objects.get(project=project)
    assert (image.original_name, image.license_name) == ("orig.jpg", "CC0")
    assert sorted(image.captions.values_list("text", flat=True)) == [
        "a brown dog",
        "a dog on grass",
        "a dog on grass",
        "a dog outside",
    ]
    [source] = ImageSource.objects.filter(image=image)
    assert (source.original_name, source.license_name, source.source_url, source.job_id) == (
        "copy.jpg",
        "CC BY",
        "http://example.org/copy",
        job.pk,
    )
    assert "Same bytes as image" in job.rows.get(position=1).reason
    assert (job.images_added, job.captions_added) == (1, 4)


def test_coco_entries_with_the_same_bytes_merge(project, manager):
    same = factories.image_bytes(seed=3)
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "caption": "first"},
            {"id": 2, "image_id": 2, "caption": "second"},
        ],
    }
    job = _manifest_job(
        project, manager, json.dumps(coco), {"a.jpg": same, "b.jpg": same}, name="c.json"
    )
    job = import_job_run(job_id=job.pk)
    assert [row.outcome for row in job.rows.order_by("position")] == [
        "added",
        "merged",
        "added",
        "added",
    ]
    image = Image.objects.get(project=project)
    assert sorted(image.captions.values_list("text", flat=True)) == ["first", "second"]


@pytest.fixture
def refuse_boom_captions(db):
    """A real database refusal for one caption text, as a NUL or a length would be on a column
    the reader does not check: a trigger, on PostgreSQL and SQLite alike."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$ BEGIN "
                "IF NEW.text = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON datasets_caption "
                "FOR EACH ROW EXECUTE FUNCTION refuse_boom()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON datasets_caption "
                "WHEN NEW.text = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
            )
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER refuse_boom"
            + (" ON datasets_caption" if connection.vendor == "postgresql" else "")
        )
        if connection.vendor == "postgresql":
            cursor.execute("DROP FUNCTION refuse_boom()")


def test_a_row_the_database_refuses_is_atomic_and_costs_no_other_row(
    project, manager, refuse_boom_captions, media_storage
):
    job = _manifest_job(
        project,
        manager,
        "image,caption\na.jpg,boom\na.jpg,fine\nb.jpg,boom\nc.jpg,also fine\n",
        {name: factories.image_bytes(seed=n) for n, name in enumerate(["a.jpg", "b.jpg", "c.jpg"])},
    )
    job = import_job_run(job_id=job.pk)
    rows = list(job.rows.order_by("position"))
    assert [row.outcome for row in rows] == ["refused", "added", "refused", "added"]
    assert "boom refused" in rows[0].reason and "database refused" in rows[0].reason
    # Image and caption together or neither: b.jpg's only row failed, so b.jpg is not stored.
    assert sorted(Image.objects.values_list("original_name", flat=True)) == ["a.jpg", "c.jpg"]
    assert list(Caption.objects.values_list("text", flat=True).order_by("text")) == [
        "also fine",
        "fine",
    ]
    stored = {str(p.relative_to(media_storage)) for p in (media_storage / "images").rglob("*")}
    assert {p for p in stored if "." in p} == set(Image.objects.values_list("file", flat=True))
    assert (job.rows_done, job.added, job.refused) == (4, 2, 2)


class _Died(BaseException):
    """What a process killed between two batches amounts to: nothing after it runs."""


def test_a_job_resumed_after_its_process_died_neither_doubles_nor_loses_a_row(
    project, manager, monkeypatch
):
    monkeypatch.setattr(jobs, "BATCH_ROWS", 4)
    rows = ["image,caption"]
    images = {}
    for n in range(10):
        images[f"{n}.jpg"] = factories.image_bytes(seed=200 + n)
        rows += [f"{n}.jpg,a caption", f"{n}.jpg,a caption", f"{n}.jpg,another {n}"]
    images["copy.jpg"] = images["0.jpg"]
    rows += ["copy.jpg,from the copy", "missing.jpg,nothing"]
    job = _manifest_job(project, manager, "\n".join(rows) + "\n", images)

    def die_after_two_batches(done, total):
        if done >= 8:
            raise _Died

    with pytest.raises(_Died):
        import_job_run(job_id=job.pk, on_progress=die_after_two_batches)
    job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING and job.rows_done == 8
    assert job.rows.count() == 8

    resumed = import_job_run(job_id=job.pk)
    assert resumed.status == ImportStatus.DONE
    assert [row.position for row in resumed.rows.order_by("position")] == list(range(32))
    assert (resumed.rows_done, resumed.refused, resumed.merged) == (32, 1, 1)
    assert Image.objects.filter(project=project).count() == 10
    # Each image has its three captions once (the repeated one twice, as in the file).
    for n in range(10):
        image = Image.objects.get(project=project, original_name=f"{n}.jpg")
        texts = sorted(image.captions.values_list("text", flat=True))
        expected = ["a caption", "a caption", f"another {n}"]
        if n == 0:
            expected.append("from the copy")
        assert texts == sorted(expected)
    assert Pair.objects.filter(image__project=project).count() == 31
    assert import_job_run(job_id=job.pk).rows_done == 32  # a third delivery changes nothing


def test_uploads_and_imports_go_through_the_storage_api_only(
    project, manager, settings, media_storage, tmp_path
):
    """InMemoryStorage keeps nothing on disk (its path() names no file): what runs here runs
    with S3 too, where web and workers share nothing but the storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    settings.CONCORD_UPLOAD_INLINE_FILES = 0
    default_storage.exists("warm")  # the lazy storage is built from the new setting
    assert type(default_storage._wrapped).__name__ == "InMemoryStorage"
    archive = zip_of(
        [("a.jpg", factories.image_bytes(seed=1)), ("b.png", factories.image_bytes(fmt="PNG"))]
    )
    job = upload_job_create(
        project=project,
        files=[
            ContentFile(archive, name="photos.zip"),
            ContentFile(factories.image_bytes(seed=2), name="c.jpg"),
        ],
        source="api",
        created_by=manager,
    )
    assert all(
        entry["storage"].startswith(f"imports/{project.pk}/{job.pk}/") for entry in job.inputs
    )
    job = import_job_run(job_id=job.pk)
    assert [row.outcome for row in job.rows.order_by("position")] == ["added"] * 3
    manifest = _manifest_job(
        project,
        manager,
        "image,caption\na.jpg,a caption\nd.jpg,another\n",
        {"a.jpg": factories.image_bytes(seed=1), "d.jpg": factories.image_bytes(seed=4)},
    )
    manifest = import_job_run(job_id=manifest.pk)
    assert [row.outcome for row in manifest.rows.order_by("position")] == ["merged", "added"]
    for image in Image.objects.filter(project=project):
        assert default_storage.exists(image.file.name)
    assert thumbnails_make(image_ids=list(Image.objects.values_list("pk", flat=True))) == 4
    # Done: the uploaded inputs have left the storage; every image keeps its own file.
    for done in (job, manifest):
        assert not any(default_storage.exists(entry["storage"]) for entry in done.inputs)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], "nothing may reach the local disk"


def test_small_uploads_run_at_once_large_ones_are_queued(
    project, manager, settings, django_capture_on_commit_callbacks
):
    settings.CONCORD_UPLOAD_INLINE_FILES = 2
    small = upload_job_create(
        project=project,
        files=[ContentFile(factories.image_bytes(seed=1), name="a.jpg")],
        source="upload",
        created_by=manager,
    )
    assert small.status == ImportStatus.DONE and small.added == 1
    sent = []
    monkey_enqueue = jobs.enqueue_on_commit
    try:
        jobs.enqueue_on_commit = lambda name, *args, what: sent.append((name, args))
        three = upload_job_create(
            project=project,
            files=[ContentFile(factories.image_bytes(seed=n), name=f"{n}.jpg") for n in range(3)],
            source="upload",
            created_by=manager,
        )
        zipped = upload_job_create(
            project=project,
            files=[ContentFile(zip_of([("x.jpg", factories.image_bytes(seed=9))]), name="one.zip")],
            source="upload",
            created_by=manager,
        )
    finally:
        jobs.enqueue_on_commit = monkey_enqueue
    assert three.status == zipped.status == ImportStatus.QUEUED
    assert sent == [(RUN_TASK, (three.pk,)), (RUN_TASK, (zipped.pk,))]


def test_a_worker_leaves_a_terminal_job_to_its_terminal(project, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,caption\na.jpg,x\n")
    job = jobs.terminal_import_create(
        project=project, kind="manifest", source_file=manifest, images_dir=tmp_path
    )
    assert job.runs_in_terminal
    assert import_job_run(job_id=job.pk).status == ImportStatus.QUEUED
    assert job.rows.count() == 0


def test_metadata_never_reaches_the_stored_copy_or_its_thumbnail(project, manager):
    """Issue 13, 7: a JPEG comment and a PNG tEXt GPSPosition survived byte for byte."""
    jpeg = io.BytesIO()
    PILImage.new("RGB", (50, 40), (10, 200, 30)).save(jpeg, "JPEG", comment=b"SECRET comment")
    info = PngImagePlugin.PngInfo()
    info.add_text("GPSPosition", "51.5007 N, 0.1246 W")
    png = io.BytesIO()
    PILImage.new("RGB", (50, 40), (10, 30, 200)).save(png, "PNG", pnginfo=info)
    job = upload_job_create(
        project=project,
        files=[
            ContentFile(jpeg.getvalue(), name="c.jpg"),
            ContentFile(png.getvalue(), name="t.png"),
        ],
        source="upload",
        created_by=manager,
    )
    assert job.added == 2
    images = list(Image.objects.filter(project=project))
    thumbnails_make(image_ids=[image.pk for image in images])
    for image in images:
        image.refresh_from_db()
        for name in (image.file.name, image.thumbnail.name):
            with default_storage.open(name) as handle:
                data = handle.read()
            assert b"SECRET" not in data and b"GPSPosition" not in data
            kind = "JPEG" if name.endswith(".jpg") else "PNG"
            assert metadata_found(data, kind) == []


def test_job_rows_are_listed_in_input_order(project, manager):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        for n in range(5):
            handle.writestr(f"{4 - n}.jpg", factories.image_bytes(seed=300 + n))
    job = upload_job_create(
        project=project,
        files=[ContentFile(archive.getvalue(), name="z.zip")],
        source="upload",
        created_by=manager,
    )
    job = import_job_run(job_id=job.pk)
    assert [row.name for row in job_rows_iter(job=job)] == [f"{4 - n}.jpg" for n in range(5)]
    assert ImportJob.objects.get(pk=job.pk).percent == 100


def test_a_zip_may_carry_its_own_manifest(project, manager):
    images = [
        ("photos/a.jpg", factories.image_bytes(seed=1)),
        ("photos/b.jpg", factories.image_bytes(seed=2)),
    ]
    manifest = ("captions.csv", b"image,caption\nphotos/a.jpg,a dog\nb.jpg,a cat\n")
    job = import_job_create(
        project=project,
        kind="manifest",
        manifest=None,
        images=[ContentFile(zip_of([manifest, *images]), name="dataset.zip")],
        created_by=manager,
    )
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportStatus.DONE, job.error
    assert [row.outcome for row in job.rows.order_by("position")] == ["added", "added"]
    assert "Read the manifest captions.csv from the uploaded zip." in job.notes
    two = import_job_create(
        project=project,
        kind="manifest",
        manifest=None,
        images=[ContentFile(zip_of([manifest, ("more.jsonl", b"{}"), *images]), name="d.zip")],
        created_by=manager,
    )
    two = import_job_run(job_id=two.pk)
    assert two.status == ImportStatus.FAILED and "Several manifests" in two.error


@pytest.mark.parametrize(
    ("kind", "manifest", "error"),
    [
        ("manifest", "file,text\na.jpg,x\n", "Missing required column"),
        ("manifest", "image,caption,caption\na.jpg,x,y\n", "names the column 'caption' 2 times"),
        ("coco", "{not json", "Not valid COCO"),
    ],
)
def test_a_failed_job_deletes_its_uploaded_inputs_too(project, manager, kind, manifest, error):
    """Done or failed, an ended job is never run again: nothing it was sent stays in the storage
    (a 2 GB zip sent with a bad manifest would otherwise stay for ever)."""
    images = zip_of([("a.jpg", factories.image_bytes(seed=1))])
    job = import_job_create(
        project=project,
        kind=kind,
        manifest=ContentFile(manifest.encode(), name="m.json" if kind == "coco" else "m.csv"),
        images=[ContentFile(images, name="images.zip")],
        created_by=manager,
    )
    assert all(default_storage.exists(entry["storage"]) for entry in job.inputs)
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportStatus.FAILED and error in job.error
    assert job.inputs and not any(default_storage.exists(entry["storage"]) for entry in job.inputs)
    assert job.rows.count() == 0 and Image.objects.count() == 0


def test_images_without_a_manifest_are_refused_before_any_job_exists(project, manager):
    """Plain images, or zips whose directory lists no manifest: refused at once (a form error,
    a 400), not a job stored only to fail."""
    zipped = zip_of([("a.jpg", factories.image_bytes(seed=1)), ("notes.txt", b"no")])
    for kind, images in [
        ("manifest", [ContentFile(factories.image_bytes(seed=2), name="b.jpg")]),
        ("manifest", [ContentFile(zipped, name="images.zip")]),
        ("coco", [ContentFile(zip_of([("m.csv", b"image,caption\n")]), name="x.zip")]),
        ("manifest", [ContentFile(b"PK\x03\x04 broken", name="broken.zip")]),
    ]:
        with pytest.raises(jobs.InputRefused, match="Choose the manifest or COCO file"):
            import_job_create(
                project=project, kind=kind, manifest=None, images=images, created_by=manager
            )
    assert ImportJob.objects.count() == 0
    assert not default_storage.exists("imports")
    with_manifest = zip_of(
        [("a.jpg", factories.image_bytes(seed=1)), ("m.CSV", b"image,caption\n")]
    )
    job = import_job_create(
        project=project,
        kind="manifest",
        manifest=None,
        images=[ContentFile(with_manifest, name="all.zip")],
        created_by=manager,
    )
    assert job.status == ImportStatus.QUEUED


def test_a_job_with_nothing_to_read_ends_saying_so(project, manager, settings):
    settings.CONCORD_UPLOAD_INLINE_FILES = 0
    empty_zip = upload_job_create(
        project=project,
        files=[ContentFile(zip_of([]), name="empty.zip")],
        source="upload",
        created_by=manager,
    )
    clutter = upload_job_create(
        project=project,
        files=[ContentFile(zip_of([("__MACOSX/._a.jpg", b"x")]), name="mac.zip")],
        source="upload",
        created_by=manager,
    )
    header_only = _manifest_job(project, manager, "image,caption\n", {"a.jpg": b"x"})
    coco = _manifest_job(project, manager, '{"images": [], "annotations": []}', {}, name="c.json")
    for job, kind in [
        (empty_zip, "upload"),
        (clutter, "upload"),
        (header_only, "manifest"),
        (coco, "coco"),
    ]:
        job = import_job_run(job_id=job.pk)
        assert (job.status, job.rows_total) == (ImportStatus.DONE, 0)
        assert jobs.NO_ROWS[kind] in job.notes, job.notes


def test_a_name_several_uploaded_files_share_is_refused_as_ambiguous(project, manager):
    job = _manifest_job(
        project,
        manager,
        "image,caption\nsame.jpg,which one?\na/same.jpg,this one\n",
        {"a/same.jpg": factories.image_bytes(seed=1), "b/same.jpg": factories.image_bytes(seed=2)},
    )
    job = import_job_run(job_id=job.pk)
    rows = list(job.rows.order_by("position"))
    assert [row.outcome for row in rows] == ["refused", "added"]
    assert rows[0].reason == jobs.IMAGE_NAME_AMBIGUOUS.format(
        count=2, name="same.jpg", paths="a/same.jpg, b/same.jpg"
    )


def test_uploads_are_judged_by_content_whatever_their_names_say(project, manager, settings):
    settings.CONCORD_UPLOAD_INLINE_FILES = 0
    job = upload_job_create(
        project=project,
        files=[
            ContentFile(factories.image_bytes(seed=1), name="photo.zip"),
            ContentFile(zip_of([("in.jpg", factories.image_bytes(seed=2))]), name="archive.jpg"),
            ContentFile(b"neither", name="junk.zip"),
        ],
        source="upload",
        created_by=manager,
    )
    job = import_job_run(job_id=job.pk)
    assert [(row.where, row.outcome) for row in job.rows.order_by("position")] == [
        ("photo.zip", "added"),
        ("archive.jpg: in.jpg", "added"),
        ("junk.zip", "refused"),
    ]
