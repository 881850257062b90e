"""The edges of ingest: the upload and import pages, the job page and its progress partial, the
REST resources for jobs and their rows, and links that are safe to click."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from datasets.ingest.services.jobs import import_job_run
from datasets.ingest.services.uploads import Provenance, image_ingest
from datasets.models import ImportJob, ImportStatus, Source
from datasets.templatetags.concord import safe_url
from tests import factories
from tests.datasets.ingest.corpus import zip_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, manager):
    client.force_login(manager)
    return client


def test_api_upload_of_a_few_images_answers_with_the_finished_job(api, project):
    response = api.post(
        reverse("api-images", kwargs={"slug": project.slug}),
        {
            "files": [
                SimpleUploadedFile("a.jpg", factories.image_bytes(seed=1)),
                SimpleUploadedFile("b.png", factories.image_bytes(fmt="PNG", seed=2)),
                SimpleUploadedFile("a-again.jpg", factories.image_bytes(seed=1)),
                SimpleUploadedFile("c.gif", factories.image_bytes(fmt="GIF")),
            ]
        },
    )
    assert response.status_code == 201
    job = response.json()
    assert (job["status"], job["rows_total"], job["counts"]) == (
        "done",
        4,
        {"added": 2, "present": 0, "merged": 1, "refused": 1},
    )
    assert response["Location"] == job["url"]
    rows = api.get(job["rows_url"]).json()["results"]
    assert [(r["where"], r["outcome"]) for r in rows] == [
        ("a.jpg", "added"),
        ("b.png", "added"),
        ("a-again.jpg", "merged"),
        ("c.gif", "refused"),
    ]
    assert rows[3]["reason"] == "GIF images are not accepted; use JPEG, PNG or WebP."
    refused = api.get(job["rows_url"], {"outcome": "refused"}).json()["results"]
    assert [r["where"] for r in refused] == ["c.gif"]
    assert api.get(job["rows_url"], {"outcome": "nope"}).status_code == 400
    assert project.images.count() == 2


def test_api_zip_upload_is_queued_then_read_by_the_worker(api, project):
    archive = zip_of([(f"{n}.jpg", factories.image_bytes(seed=n)) for n in range(3)])
    response = api.post(
        reverse("api-images", kwargs={"slug": project.slug}),
        {"files": [SimpleUploadedFile("photos.zip", archive)]},
    )
    assert response.status_code == 202
    job = response.json()
    assert (job["status"], job["rows_done"], job["rows_total"]) == ("queued", 0, None)
    import_job_run(job_id=job["id"])  # the worker's part
    done = api.get(job["url"]).json()
    assert (done["status"], done["counts"]["added"], done["percent"]) == ("done", 3, 100)
    listing = api.get(reverse("api-imports", kwargs={"slug": project.slug})).json()
    assert [item["id"] for item in listing["results"]] == [job["id"]]


def test_upload_without_files_is_a_clear_400(api, project):
    response = api.post(reverse("api-images", kwargs={"slug": project.slug}), {})
    assert response.status_code == 400
    assert "files" in response.json()["detail"]


def test_api_manifest_import(api, project):
    manifest = b"image,caption\na.jpg,a dog\nb.jpg,a cat\n"
    images = zip_of(
        [("a.jpg", factories.image_bytes(seed=1)), ("b.jpg", factories.image_bytes(seed=2))]
    )
    url = reverse("api-imports", kwargs={"slug": project.slug})
    response = api.post(
        url,
        {
            "kind": "manifest",
            "manifest": SimpleUploadedFile("m.csv", manifest),
            "images": [SimpleUploadedFile("images.zip", images)],
        },
    )
    assert response.status_code == 202, response.json()
    job = import_job_run(job_id=response.json()["id"])
    assert (job.status, job.added, job.captions_added) == ("done", 2, 2)
    bad = api.post(url, {"kind": "excel", "manifest": SimpleUploadedFile("m.csv", manifest)})
    assert bad.status_code == 400 and "kind" in bad.json()
    missing = api.post(url, {"kind": "coco"})
    assert missing.status_code == 400 and "manifest" in missing.json()


def test_job_resources_are_for_the_project_managers(client, project, annotator, outsider, manager):
    job = ImportJob.objects.create(project=project, kind="upload", source=Source.API)
    url = reverse("api-import", kwargs={"slug": project.slug, "job_id": job.pk})
    page = reverse("import-job", kwargs={"slug": project.slug, "job_id": job.pk})
    client.force_login(annotator)
    assert client.get(url).status_code == 403 and client.get(page).status_code == 403
    client.force_login(outsider)
    assert client.get(url).status_code == 404 and client.get(page).status_code == 404
    other = factories.project(manager=manager, name="Other")
    client.force_login(manager)
    assert client.get(url).status_code == 200
    assert (
        client.get(reverse("import-job", kwargs={"slug": other.slug, "job_id": job.pk})).status_code
        == 404
    )


def test_upload_page_stores_and_sends_to_the_job_page(client, project, manager):
    client.force_login(manager)
    response = client.post(
        reverse("project-upload", kwargs={"slug": project.slug}),
        {
            "files": [
                SimpleUploadedFile("one.jpg", factories.image_bytes(seed=1)),
                SimpleUploadedFile("two.jpg", factories.image_bytes(seed=2)),
                SimpleUploadedFile("broken.jpg", b"\xff\xd8 nope"),
            ]
        },
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "import-job", kwargs={"slug": project.slug, "job_id": job.pk}
    )
    page = client.get(response["Location"]).content.decode()
    assert page.count('data-outcome="added"') == 2
    assert page.count('data-outcome="refused"') == 1
    assert "Not a readable image" in page
    assert "hx-trigger" not in page  # finished: nothing to poll
    empty = client.post(reverse("project-upload", kwargs={"slug": project.slug}), {})
    assert empty.status_code == 200 and "This field is required" in empty.content.decode()


def test_job_page_polls_while_live_and_reloads_when_done(client, project, manager):
    client.force_login(manager)
    archive = zip_of([("a.jpg", factories.image_bytes(seed=1))])
    client.post(
        reverse("project-upload", kwargs={"slug": project.slug}),
        {"files": [SimpleUploadedFile("a.zip", archive)]},
    )
    job = ImportJob.objects.get()
    url = reverse("import-job", kwargs={"slug": project.slug, "job_id": job.pk})
    page = client.get(url).content.decode()
    assert 'data-job-status="queued"' in page and "every 1s" in page
    assert "Waiting for a worker" in page
    partial = client.get(url, {"part": "status"}, HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode() and "HX-Refresh" not in partial
    import_job_run(job_id=job.pk)
    finished = client.get(url, {"part": "status"}, HTTP_HX_REQUEST="true")
    assert finished["HX-Refresh"] == "true"
    assert 'data-job-status="done"' in finished.content.decode()


def test_job_page_pages_and_filters_rows(client, project, manager, settings):
    from datasets.ingest import views

    settings.CONCORD_UPLOAD_INLINE_FILES = 0
    client.force_login(manager)
    archive = zip_of(
        [(f"{n:02d}.jpg", factories.image_bytes(seed=n)) for n in range(5)] + [("x.txt", b"no")]
    )
    client.post(
        reverse("project-upload", kwargs={"slug": project.slug}),
        {"files": [SimpleUploadedFile("a.zip", archive)]},
    )
    job = import_job_run(job_id=ImportJob.objects.get().pk)
    url = reverse("import-job", kwargs={"slug": project.slug, "job_id": job.pk})
    old = views.ROWS_PER_PAGE
    views.ROWS_PER_PAGE = 4
    try:
        first = client.get(url)
        assert [row.position for row in first.context["rows"]] == [0, 1, 2, 3]
        second = client.get(url, {"after": first.context["next_after"]})
        assert [row.position for row in second.context["rows"]] == [4, 5]
        refused = client.get(url, {"outcome": "refused"})
        assert [row.where for row in refused.context["rows"]] == ["a.zip: x.txt"]
    finally:
        views.ROWS_PER_PAGE = old


def test_import_page_queues_a_manifest_import(client, project, manager):
    client.force_login(manager)
    url = reverse("project-import", kwargs={"slug": project.slug})
    assert client.get(url).status_code == 200
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "caption": "a dog"}],
    }
    response = client.post(
        url,
        {
            "kind": "coco",
            "manifest": SimpleUploadedFile("captions.json", json.dumps(coco).encode()),
            "images": [SimpleUploadedFile("a.jpg", factories.image_bytes(seed=1))],
        },
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302 and job.status == ImportStatus.QUEUED
    job = import_job_run(job_id=job.pk)
    assert (job.added, job.captions_added) == (2, 1)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://example.org/a", True),
        ("http://example.org", True),
        ("javascript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("JAVASCRIPT:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("vbscript:msgbox(1)", False),
        ("//evil.example/", False),
        ("/projects/", False),
        ("", False),
        (None, False),
    ],
)
def test_safe_url_filter(url, safe):
    assert safe_url(url) == (url if safe else "")


def test_unsafe_urls_stored_before_are_shown_as_text_not_links(client, project, manager):
    """Rows imported before URLs were checked may still hold a javascript: URL."""
    result = image_ingest(
        project=project,
        data=factories.image_bytes(seed=1),
        provenance=Provenance(
            source=Source.COCO,
            original_name="x.jpg",
            source_url="javascript:alert(document.cookie)",
            license_name="Evil licence",
            license_url="JavaScript:alert(2)",
        ),
    )
    client.force_login(manager)
    page = client.get(
        reverse("image-detail", kwargs={"slug": project.slug, "image_id": result.image_id})
    ).content.decode()
    assert 'href="javascript' not in page.lower()
    assert "javascript:alert(document.cookie)" in page  # still visible, as text


def _png(size: tuple[int, int], *, text: str = "") -> bytes:
    """A PNG of ``size`` pixels that compresses to a few KB (one colour), with an optional tEXt
    chunk so that storing it means decoding and re-encoding every pixel."""
    import io

    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    buffer = io.BytesIO()
    PILImage.new("1", size).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_an_upload_of_few_small_files_but_many_pixels_is_never_decoded_in_the_request(api, project):
    """The inline path is bounded by decoded work (pixels the headers declare), not by file count
    or bytes: one 49-megapixel PNG of a few KB, under every other limit, goes to a worker (202)
    and nothing is decoded or stored while the request runs."""
    big = _png((7000, 7000), text="must be re-encoded")
    assert len(big) < 100_000
    response = api.post(
        reverse("api-images", kwargs={"slug": project.slug}),
        {"files": [SimpleUploadedFile("big.png", big)]},
    )
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "queued"
    assert project.images.count() == 0
    assert ImportJob.objects.get().status == ImportStatus.QUEUED


def test_the_inline_pixel_budget_counts_every_file_of_the_upload(api, project, settings):
    settings.CONCORD_UPLOAD_INLINE_PIXELS = 1_500_000
    url = reverse("api-images", kwargs={"slug": project.slug})
    one = api.post(url, {"files": [SimpleUploadedFile("a.png", _png((1000, 1000)))]})
    assert (one.status_code, one.json()["status"]) == (201, "done")
    two = api.post(
        url,
        {
            "files": [
                SimpleUploadedFile("b.png", _png((1000, 1001))),
                SimpleUploadedFile("c.png", _png((1000, 1002))),
            ]
        },
    )
    assert (two.status_code, two.json()["status"]) == (202, "queued")
    # Files that are no image at all cost nothing to refuse: they never push an upload out.
    junk = api.post(
        url, {"files": [SimpleUploadedFile(f"{n}.jpg", b"not an image") for n in "xyz"]}
    )
    assert (junk.status_code, junk.json()["counts"]["refused"]) == (201, 3)


def test_the_import_form_and_api_take_the_manifest_encoding(api, project):
    raw = "image;caption\na.jpg;Žluťoučký kůň\n".encode("cp1250")
    images = zip_of([("a.jpg", factories.image_bytes(seed=1))])
    page = api.post(
        reverse("project-import", kwargs={"slug": project.slug}),
        {
            "kind": "manifest",
            "encoding": "cp1250",
            "manifest": SimpleUploadedFile("m.csv", raw),
            "images": [SimpleUploadedFile("i.zip", images)],
        },
    )
    assert page.status_code == 302
    job = import_job_run(job_id=ImportJob.objects.get().pk)
    assert "Read as cp1250 (chosen)." in job.notes
    assert project.images.get().captions.get().text == "Žluťoučký kůň"
    url = reverse("api-imports", kwargs={"slug": project.slug})
    bad = api.post(
        url, {"kind": "manifest", "encoding": "rot13", "manifest": SimpleUploadedFile("m.csv", raw)}
    )
    assert bad.status_code == 400 and "encoding" in bad.json()
    default = api.post(url, {"kind": "manifest", "manifest": SimpleUploadedFile("m.csv", raw)})
    assert default.status_code == 202
    job = import_job_run(job_id=default.json()["id"])
    # Detected: Windows-1250 reads this best; the note names it and says how to choose.
    assert any("(detected)" in note and "choosing" in note for note in job.notes), job.notes


def test_a_queued_job_page_says_how_many_import_jobs_are_ahead(client, project, manager):
    from datasets.ingest.services.jobs import import_job_create

    client.force_login(manager)
    made = [
        import_job_create(
            project=project,
            kind="manifest",
            manifest=SimpleUploadedFile("m.csv", b"image,caption\na.jpg,x\n"),
            images=[],
            created_by=manager,
        )
        for _ in range(3)
    ]
    url = reverse("import-job", kwargs={"slug": project.slug, "job_id": made[2].pk})
    assert "2 import jobs ahead of this one" in client.get(url).content.decode()
    import_job_run(job_id=made[0].pk)
    partial = client.get(url, {"part": "status"}, HTTP_HX_REQUEST="true").content.decode()
    assert "1 import job ahead of this one" in partial
    first = reverse("import-job", kwargs={"slug": project.slug, "job_id": made[1].pk})
    assert "ahead of this one" not in client.get(first).content.decode()


def test_an_over_long_file_name_is_refused_as_a_zip_members_is_not_stored_cut(api, project):
    """Django cuts an uploaded file's name to 255 characters; a zip member's name over 255 is
    refused. A direct upload now gets the same outcome, whichever way it comes."""
    import io

    long_name = "x" * 300 + ".jpg"
    sent = io.BytesIO(factories.image_bytes(seed=1))
    sent.name = long_name  # a SimpleUploadedFile would cut it before sending
    response = api.post(
        reverse("api-images", kwargs={"slug": project.slug}),
        {
            "files": [
                sent,
                SimpleUploadedFile("y" * 251 + ".jpg", factories.image_bytes(seed=2)),
            ]
        },
    )
    rows = api.get(response.json()["rows_url"]).json()["results"]
    assert [(r["outcome"], r["reason"]) for r in rows] == [
        ("refused", "'file name' is longer than 255 characters."),
        ("added", ""),
    ]
    assert rows[0]["name"] == long_name
    assert list(project.images.values_list("original_name", flat=True)) == ["y" * 251 + ".jpg"]


def test_an_oversized_upload_is_refused_with_its_true_size_in_binary_units(api, project, settings):
    settings.CONCORD_MAX_IMAGE_BYTES = 2**20
    big = factories.image_bytes(fmt="PNG", seed=1) + bytes(3 * 2**19)  # 1.5 MiB and a bit
    response = api.post(
        reverse("api-images", kwargs={"slug": project.slug}),
        {"files": [SimpleUploadedFile("big.png", big)]},
    )
    [row] = api.get(response.json()["rows_url"]).json()["results"]
    assert row["reason"] == f"The file is {len(big) / 2**20:.1f} MiB; the limit is 1 MiB."
    assert row["reason"].startswith("The file is 1.5 MiB")
