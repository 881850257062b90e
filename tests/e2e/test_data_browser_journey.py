"""A manager finds pairs with the data browser's filters, shares the view, acts on it; and
downloads a whole release as one zip."""

import hashlib
import zipfile
from pathlib import Path

from annotate.models import ItemLabel
from datasets.ingest.services.uploads import caption_create
from datasets.models import ImageFlag, Pair, Release
from datasets.releases import services as releases
from tests import factories
from tests.e2e.conftest import log_in


def _project(manager, name):
    project = factories.project(manager=manager, name=name)
    texts = ["A black cat on a red sofa", "A brown dog in the snow", "A black dog in the park"]
    images = []
    for seed, text in enumerate(texts):
        image = factories.image(project=project, seed=seed)
        caption = caption_create(image=image, text=text, source="api")
        ItemLabel.objects.create(
            project=project,
            pair=Pair.objects.get(caption=caption),
            label=1,
            confidence=0.9,
            judgments=3,
            status="agreed",
        )
        images.append(image)
    return project, images


def test_manager_filters_the_grid_and_acts_on_the_selection(page, transactional_db):
    manager = factories.user("rita")
    project, images = _project(manager, "Pets")
    ImageFlag.objects.create(image=images[2], code="blank", message="Blank")

    log_in(page, "rita", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/images/")
    assert page.locator("[data-image-grid] .tile").count() == 3
    page.fill("[data-browse-filters] input[name=q]", "black")
    page.click("[data-apply-filters]")
    page.wait_for_url("**/images/?q=black")  # only the fields that filter stay in the URL
    assert page.locator("[data-image-grid] .tile").count() == 2
    page.select_option("[data-browse-filters] select[name=flagged]", "no")
    page.click("[data-apply-filters]")
    page.wait_for_url("**/images/?q=black&flagged=no")
    assert page.locator("[data-image-grid] .tile").count() == 1

    # The view is a URL: opened anew it shows the same; a bad value says what is wrong.
    shared = page.url
    page.goto(shared)
    assert page.locator("[data-image-grid] .tile").count() == 1
    assert page.locator("[data-browse-filters] input[name=q]").input_value() == "black"
    page.goto(f"/projects/{project.slug}/images/?captions_min=lots")
    assert "captions_min" in page.locator("[data-filter-error]").inner_text()
    # Two bad values: both are named at once, and the NUL is not put back into the number input
    # (Chromium would warn that it cannot parse it and drop it).
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text))
    page.goto(f"/projects/{project.slug}/pairs/?gold=maybe&captions_min=%00")
    assert page.locator("[data-filter-error]").count() == 2
    assert page.locator("[data-browse-filters] input[name=captions_min]").input_value() == ""
    assert not [w for w in warnings if "cannot be parsed" in w]

    # The same filter as a pair list, and an action on its selection.
    page.goto(shared)
    page.click("text=These filters as a pair list")
    page.wait_for_selector("[data-pair-list]")
    assert page.locator("[data-pair-list] tbody tr").count() == 1
    page.select_option("[data-pair-actions] select[name=action]", "exclude")
    page.click("[data-act]")
    page.wait_for_selector("[data-confirm-action]")  # how many pairs, before anything is done
    assert page.locator("[data-count]").inner_text() == "1 pair"
    page.click("[data-confirm]")
    page.wait_for_selector("text=Exclude from releases: 1 pair done.")
    assert list(Pair.objects.filter(excluded_from_releases=True)) == [
        Pair.objects.get(image=images[0])
    ]
    assert "q=black" in page.url and "flagged=no" in page.url


def test_manager_downloads_a_whole_release_as_one_zip(page, transactional_db):
    manager = factories.user("rita")
    project, _ = _project(manager, "Harbour")
    options = releases.release_options(project=project, formats=["jsonl"], copy_images=True)
    release = releases.release_request(project=project, user=manager, options=options)
    release = releases.release_build(release_id=release.pk)
    assert release.status == "ready", release.error

    log_in(page, "rita", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/releases/v1/")
    folder = page.locator("[data-folder='images']")
    assert "3 files" in folder.locator("summary").inner_text()
    assert page.locator(".datasheet h1").inner_text().startswith("Datasheet: Harbour v1")
    with page.expect_download() as info:
        page.click("[data-download-all]")
    download = info.value
    assert download.suggested_filename == f"{project.slug}-v1.zip"
    with zipfile.ZipFile(Path(download.path())) as archive:
        listed = releases.release_files(release=Release.objects.get(pk=release.pk))
        assert archive.namelist() == [f["path"] for f in listed]
        for entry in listed:
            assert hashlib.sha256(archive.read(entry["path"])).hexdigest() == entry["sha256"]
