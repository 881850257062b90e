"""A manager collects images from a manifest of URLs in the browser: the job's page shows the
rows fetched and failed with the failures by reason while a worker fetches them from a real HTTP
server on 127.0.0.1; then the failed row is retried from the page once its server is back."""

from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from config.celery import app
from datasets.models import ImportJob, ImportStatus
from tests import factories
from tests.datasets.ingest.image_server import ImageServer
from tests.e2e.conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def server():
    running = ImageServer()
    yield running
    running.close()


def test_collect_urls_watch_the_failures_and_retry_them(
    page, transactional_db, tmp_path, server, settings
):
    settings.CONCORD_COLLECT_ALLOW_CIDRS = ["127.0.0.0/8"]
    settings.CONCORD_COLLECT_PER_HOST_RATE = 0
    manager = factories.user("carla")
    project = factories.project(manager=manager, name="Web photos")
    manifest = tmp_path / "urls.csv"
    rows = [f"{server.url(f'/img/{n}.jpg')},photo {n},site-{n}" for n in range(6)]
    rows.append(f"{server.url('/flaky.png')},flaky,site-x")
    rows.append(f"{server.url('/page.html')},a page,site-y")
    manifest.write_text("url,caption,site\n" + "\n".join(rows) + "\n")
    server.flaky_ok = False

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, "carla", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/upload/")
    page.click("text=collect images from a manifest of URLs")
    page.set_input_files("input[name=manifest]", str(manifest))
    page.click("button:has-text('Collect')")
    page.wait_for_url("**/imports/*/")
    job = ImportJob.objects.get(project=project)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=60):
        page.wait_for_selector("[data-job-status=done]", timeout=90_000)
    failures = page.locator("[data-collect-failures] tr[data-failure]")
    assert sorted(failures.nth(i).get_attribute("data-failure") for i in range(2)) == [
        "http_status",
        "not_image",
    ]
    assert "6" in page.locator("[data-collect-progress]").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "collect-job-done.png"), full_page=True)

    server.flaky_ok = True
    page.click("button:has-text('Retry failed rows')")
    page.wait_for_url("**/imports/*/")
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=60):
        page.wait_for_selector("[data-job-status=done]", timeout=90_000)
    job.refresh_from_db()
    assert (job.status, job.added, job.refused) == (ImportStatus.DONE, 7, 1)
    assert [f.get_attribute("data-failure") for f in page.locator("tr[data-failure]").all()] == [
        "not_image"
    ]
