"""A manager uploads a zip in the browser: it is stored at once, a worker reads it with a progress
bar on the job's page, and every member's outcome is listed; then a manifest import the same way."""

import io
import zipfile
from pathlib import Path

from celery.contrib.testing.worker import start_worker
from django.contrib.auth.models import Permission

from config.celery import app
from datasets.models import ImportJob
from tests import factories
from tests.e2e.conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
IMAGES = 240


def _zip(tmp_path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(IMAGES):
            archive.writestr(f"harbour/{n:03d}.jpg", factories.image_bytes(seed=n, size=(200, 150)))
        archive.writestr("harbour/001-copy.jpg", factories.image_bytes(seed=1, size=(200, 150)))
        archive.writestr("harbour/notes.txt", b"not an image")
        archive.writestr("../escape.jpg", factories.image_bytes(seed=999))
    path = tmp_path / "harbour.zip"
    path.write_bytes(buffer.getvalue())
    return path


def test_upload_a_zip_watch_the_job_and_read_every_result(page, transactional_db, tmp_path):
    manager = factories.user("maria")
    manager.user_permissions.add(
        Permission.objects.get(codename="add_project", content_type__app_label="datasets")
    )
    project = factories.project(manager=manager, name="Harbour photos")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    log_in(page, "maria", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/upload/")
    page.set_input_files("input[type=file]", str(_zip(tmp_path)))
    assert "1 file selected" in page.locator("[data-file-summary]").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "upload-form.png"), full_page=True)
    page.click("button:has-text('Upload')")
    # Stored and queued: the job's page, waiting for a worker.
    page.wait_for_url("**/imports/*/")
    job = ImportJob.objects.get(project=project)
    assert page.locator("[data-job-status]").get_attribute("data-job-status") == "queued"
    assert "Waiting for a worker" in page.locator("[data-job-progress-text]").inner_text()

    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=60,
        queues=["ingest", "default"],
    ):
        # The page polls: the bar moves while the worker reads (unless it was quicker than a poll).
        page.wait_for_function(
            "document.querySelector('[data-job-status=done]') ||"
            " (document.querySelector('[data-job-progress]') &&"
            "  Number(document.querySelector('[data-job-progress]').value) > 0)",
            timeout=60_000,
        )
        if page.locator("[data-job-status=running]").count():
            page.screenshot(path=str(SCREENSHOTS / "import-job-running.png"), full_page=True)
        # When the job is done the page reloads itself with the results.
        page.wait_for_selector("[data-job-status=done]", timeout=120_000)

    job.refresh_from_db()
    total = IMAGES + 3
    assert (job.rows_done, job.added, job.merged, job.refused) == (total, IMAGES, 1, 2)
    assert f"{total} rows read" in page.locator("[data-job-summary]").inner_text()
    assert page.locator("tr[data-outcome]").count() == 200  # the first page of rows
    page.screenshot(path=str(SCREENSHOTS / "import-job-results.png"), full_page=True)

    page.click("[data-job-counts] >> text=refused")
    page.wait_for_url("**outcome=refused")
    refused = page.locator("tr[data-outcome=refused]")
    assert refused.count() == 2
    assert "Not a readable image" in refused.nth(0).inner_text()
    assert "Unsafe path" in refused.nth(1).inner_text()
    page.click("text=merged")
    merged = page.locator("tr[data-outcome=merged]")
    assert merged.count() == 1 and "001-copy.jpg" in merged.inner_text()
    merged.locator("a:has-text('image')").click()
    page.wait_for_selector("[data-extra-sources]")
    assert "harbour/001-copy.jpg" in page.locator("[data-extra-sources]").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "image-extra-sources.png"), full_page=True)


def test_a_manager_imports_a_manifest_from_the_browser(page, transactional_db, tmp_path):
    manager = factories.user("mina")
    project = factories.project(manager=manager, name="Street scenes")
    manifest = tmp_path / "captions.csv"
    manifest.write_text(
        "image;caption;source_url\n"
        "a.jpg;a dog, running;https://example.org/a\n"
        'b.jpg;"a stray quote\n'
        "b.jpg;a cat;javascript:alert(1)\n"
        "c.jpg;a boat;\n"
    )
    images = []
    for n, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        path = tmp_path / name
        path.write_bytes(factories.image_bytes(seed=n))
        images.append(str(path))

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, "mina", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/upload/")
    page.click("text=Import a manifest or COCO file")
    page.set_input_files("input[name=manifest]", str(manifest))
    page.set_input_files("input[name=images]", images)
    page.screenshot(path=str(SCREENSHOTS / "import-form.png"), full_page=True)
    page.click("button:has-text('Import')")
    page.wait_for_url("**/imports/*/")
    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=60,
        queues=["ingest", "default"],
    ):
        page.wait_for_selector("[data-job-status=done]", timeout=60_000)
    assert (
        "Read as semicolon-separated values." in page.locator("[data-job-note]").first.inner_text()
    )
    outcomes = page.locator("tr[data-outcome]")
    assert [outcomes.nth(i).get_attribute("data-outcome") for i in range(4)] == [
        "added",
        "refused",
        "refused",
        "added",
    ]
    assert "quote" in outcomes.nth(1).inner_text()
    assert "http or https" in outcomes.nth(2).inner_text()
    page.screenshot(path=str(SCREENSHOTS / "manifest-import-results.png"), full_page=True)


def test_long_names_wrap_and_the_manifest_encoding_is_chosen_in_the_form(
    page, transactional_db, tmp_path
):
    """A 300-character file name is refused (never stored cut) and wraps in the results instead
    of widening the page; a Central European CSV is read as the encoding chosen in the form."""
    manager = factories.user("lena")
    project = factories.project(manager=manager, name="Long names")
    log_in(page, "lena", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/upload/")
    page.set_input_files(
        "input[type=file]",
        [{"name": "n" * 300 + ".jpg", "mimeType": "image/jpeg", "buffer": factories.image_bytes()}],
    )
    page.click("button:has-text('Upload')")
    page.wait_for_selector("[data-job-status=done]", timeout=30_000)
    row = page.locator("tr[data-outcome]")
    assert row.get_attribute("data-outcome") == "refused"
    assert "longer than 255 characters" in row.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert row.locator(".pill").inner_text() == "Refused"

    manifest = tmp_path / "czech.csv"
    manifest.write_bytes("image,caption\na.jpg,Žluťoučký kůň\n".encode("cp1250"))
    picture = tmp_path / "a.jpg"
    picture.write_bytes(factories.image_bytes(seed=5))
    page.goto(f"/projects/{project.slug}/import/")
    page.set_input_files("input[name=manifest]", str(manifest))
    page.select_option("select[name=encoding]", "cp1250")
    page.set_input_files("input[name=images]", [str(picture)])
    page.click("button:has-text('Import')")
    page.wait_for_url("**/imports/*/")
    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=60,
        queues=["ingest", "default"],
    ):
        page.wait_for_selector("[data-job-status=done]", timeout=60_000)
    notes = page.locator("[data-job-note]").all_inner_texts()
    assert "Read as cp1250 (chosen)." in notes
    assert project.images.get().captions.get().text == "Žluťoučký kůň"
