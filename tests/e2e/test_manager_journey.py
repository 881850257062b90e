from pathlib import Path

from django.contrib.auth.models import Permission

from datasets.models import Project
from tests import factories
from tests.e2e.conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_manager_creates_project_uploads_and_browses(page, transactional_db, tmp_path):
    manager = factories.user("maria")
    manager.user_permissions.add(
        Permission.objects.get(codename="add_project", content_type__app_label="datasets")
    )
    files = []
    for name, data in (
        ("red.jpg", factories.image_bytes(seed=1, size=(120, 90))),
        ("blue.png", factories.image_bytes(fmt="PNG", seed=2, size=(90, 120))),
        ("broken.jpg", b"\xff\xd8\xff\xe0 this is not really a JPEG"),
    ):
        path = tmp_path / name
        path.write_bytes(data)
        files.append(str(path))

    log_in(page, "maria", factories.PASSWORD)
    page.click("text=New project")
    page.fill("input[name=name]", "Harbour photos")
    page.fill("textarea[name=guidelines]", "Describe the **boats**.")
    page.click("button:has-text('Create project')")
    page.wait_for_selector("h1:has-text('Harbour photos')")
    assert page.locator(".guidelines strong").inner_text() == "boats"
    project = Project.objects.get(name="Harbour photos")

    page.click("nav.crumbs >> text=Upload")
    page.set_input_files("input[type=file]", files)
    page.click("button:has-text('Upload')")
    # A few images are checked at once: the job's page opens with its results.
    page.wait_for_selector("[data-job-status=done]")
    assert page.locator("tr[data-outcome=added]").count() == 2
    rejected = page.locator("tr[data-outcome=refused]")
    assert rejected.count() == 1
    assert "broken.jpg" in rejected.inner_text()
    assert "Not a readable image" in rejected.inner_text()
    assert "3 rows read" in page.locator("[data-job-summary]").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "upload-results.png"), full_page=True)

    page.click("text=Open the image grid")
    page.wait_for_selector("[data-image-grid]")
    tiles = page.locator(".tile img")
    assert tiles.count() == 2
    # Every thumbnail really loads (served through the permission-checked view).
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.tile img')).every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(SCREENSHOTS / "image-grid.png"), full_page=True)
    assert project.images.count() == 2
