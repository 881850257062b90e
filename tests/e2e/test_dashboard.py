from annotate.agreement.services.consensus import consensus_recompute
from annotate.agreement.services.recomputes import consensus_recompute_job
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from tests import factories
from tests.e2e.conftest import log_in

CHARTS = ["progress", "alpha", "accuracy-speed", "kappa", "labels", "disputed"]


def test_manager_sees_every_agreement_chart_drawn(page, transactional_db):
    manager = factories.user("mara")
    project = factories.project(manager=manager, name="Harbour", gold_rate=0.0)
    factories.verify_tasks(project=project, count=12, target=4)
    crowd = []
    for number in range(4):
        user = factories.user(f"ann{number}")
        factories.member(project=project, user=user, role="annotator")
        crowd.append(user)
    for index, user in enumerate(crowd):
        while lease := assignment_get(project=project, annotator=user, lookahead=0).current:
            # Three honest annotators; the last one says "match" to everything.
            honest = "match" if lease.task.pk % 2 else "no_match"
            judgment_submit(lease=lease, answer="match" if index == 3 else honest)
    consensus_recompute(project=project)
    consensus_recompute(project=project)  # two points over time

    log_in(page, "mara", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/")
    page.click("nav.crumbs .tabs >> text=Agreement")
    page.wait_for_selector("h1:has-text('Agreement')")
    assert "minutes ago" in page.inner_text(".freshness")
    for key in CHARTS:
        svg = page.locator(f"figure[data-chart='{key}'] svg")
        box = svg.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50, key
        # Marks (dots, bars, cells, lines) with a real size on screen, not just an empty frame.
        sizes = svg.evaluate(
            """svg => [...svg.querySelectorAll('circle, rect, polyline, polygon')]
                .map(mark => mark.getBoundingClientRect())
                .filter(box => box.width > 0 && box.height > 0).length"""
        )
        assert sizes > 0, key
    assert page.locator("svg[aria-label*='Not computed']").count() == 0
    assert page.locator("table.annotators tbody tr").count() == 4
    page.click("text=Disputed items")
    page.wait_for_selector("h1:has-text('Disputed items')")


def test_the_recompute_button_queues_and_the_page_follows_the_run(page, transactional_db):
    """The button answers at once with the run queued; when a worker has run it (here: the
    task's service, called as the worker does), the polling status says so without a reload."""
    manager = factories.user("mira")
    project = factories.project(manager=manager, name="Quay", gold_rate=0.0)
    factories.verify_tasks(project=project, count=4, target=1)
    user = factories.user("ann")
    factories.member(project=project, user=user, role="annotator")
    while lease := assignment_get(project=project, annotator=user, lookahead=0).current:
        judgment_submit(lease=lease, answer="match")

    log_in(page, "mira", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/agreement/")
    page.click("button:has-text('Recompute')")
    page.wait_for_selector("#recompute-status[data-recompute='waiting']")
    assert "Recompute queued" in page.inner_text("body")
    assert "Not computed yet" in page.inner_text(".freshness")

    consensus_recompute_job(project_id=project.pk)
    page.wait_for_selector("#recompute-status[data-recompute='idle']", timeout=10_000)
    assert "4 items rewritten" in page.inner_text("#recompute-status")
