"""A manager cuts a release, watches it build, and downloads its datasheet."""

from pathlib import Path

from annotate.models import ItemLabel
from datasets.ingest.services.uploads import caption_create
from datasets.models import Pair, Release
from datasets.releases.services import release_build
from tests import factories
from tests.e2e.conftest import log_in


def test_manager_cuts_a_release_and_downloads_its_datasheet(
    page, transactional_db, settings, tmp_path
):
    manager = factories.user("rita")
    project = factories.project(manager=manager, name="Harbour photos")
    for seed in range(3):
        image = factories.image(project=project, seed=seed)
        caption = caption_create(image=image, text=f"Boats in the harbour {seed}", source="api")
        ItemLabel.objects.create(
            project=project,
            pair=Pair.objects.get(caption=caption),
            label=1,
            confidence=0.9,
            judgments=3,
            status="agreed",
        )

    log_in(page, "rita", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/")
    page.click("nav.crumbs >> text=Releases")
    page.uncheck("input[value=webdataset]")
    page.click("button:has-text('Cut a release')")
    row = page.locator("tr[data-release='1']")
    row.wait_for()
    assert row.get_attribute("data-status") == "queued"
    assert row.locator("progress").count() == 1

    # The worker's part, run here: the page's poll picks up the finished release.
    release_build(release_id=Release.objects.get(project=project).pk)
    page.wait_for_selector("tr[data-release='1'][data-status='ready']", timeout=10_000)

    page.click("tr[data-release='1'] >> text=v1")
    page.wait_for_selector("h1:has-text('Release v1')")
    assert page.locator(".datasheet h1").inner_text().startswith("Datasheet: Harbour photos v1")
    with page.expect_download() as info:
        page.click("a:has-text('DATASHEET.md')")
    download = info.value
    assert download.suggested_filename == "DATASHEET.md"
    text = Path(download.path()).read_text(encoding="utf-8")
    assert "# Datasheet: Harbour photos v1" in text

    # Pinned: kept forever, whatever the retention setting; and unpinned again.
    page.click("button:has-text('Pin (keep forever)')")
    page.wait_for_selector("[data-pinned]")
    assert "kept forever" in page.locator("[data-retention]").inner_text()
    assert Release.objects.get(project=project).pinned
    page.click("button:has-text('Unpin')")
    page.wait_for_selector("button:has-text('Pin (keep forever)')")
    assert not Release.objects.get(project=project).pinned
