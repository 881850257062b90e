"""An unsent caption survives a reload of the annotator's screen (kept in the browser's
localStorage under its project, task and lease), goes once the answer or skip is taken, and is
never put into another task's box."""

from datetime import timedelta

from django.utils import timezone

from annotate.models import Judgment, Lease
from annotate.queue.services.leases import leases_reclaim
from annotate.queue.services.pool import tasks_open
from tests import factories
from tests.e2e.conftest import log_in

DRAFT = "a small red square beside a tall tree"
KEYS = "Object.keys(localStorage).filter(k => k.startsWith('concord:draft:'))"


def _caption_project(images: int):
    manager = factories.user("boss")
    annotator = factories.user("ann")
    project = factories.project(manager=manager, name="Drafts", captions_per_image=1, gold_rate=0)
    factories.member(project=project, user=annotator, role="annotator")
    for seed in range(images):
        factories.image(project=project, seed=seed)
    tasks_open(project=project)
    return project, annotator


def _open(page, project):
    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    return page.get_attribute("[data-task-kind=caption]", "data-lease")


def test_a_draft_comes_back_after_a_reload_and_goes_with_the_submit(page, transactional_db):
    project, _ = _caption_project(images=2)
    lease = _open(page, project)
    page.locator("textarea").focus()
    page.keyboard.type(DRAFT)
    page.reload()
    assert page.get_attribute("[data-task-kind=caption]", "data-lease") == lease
    assert page.input_value("textarea") == DRAFT
    # Restored as if typed: the live rule check has its verdict on it.
    page.wait_for_selector("[data-feedback][data-checked=ok]")

    page.locator("textarea").focus()
    page.keyboard.press("End")
    page.keyboard.type(" in the sun")
    page.keyboard.press("Enter")
    page.wait_for_function(f"!document.querySelector('[data-lease=\"{lease}\"]')")
    assert Judgment.objects.get(lease_id=lease).caption.text == DRAFT + " in the sun"
    assert page.evaluate(KEYS) == []
    assert page.input_value("textarea") == ""
    page.reload()  # the next task: nothing of the sent caption comes back
    assert page.get_attribute("[data-task-kind=caption]", "data-lease") != lease
    assert page.input_value("textarea") == ""


def test_a_skip_drops_the_draft(page, transactional_db):
    project, _ = _caption_project(images=2)
    lease = _open(page, project)
    page.locator("textarea").focus()
    page.keyboard.type(DRAFT)
    assert len(page.evaluate(KEYS)) == 1
    page.click("form.skip button")
    page.wait_for_function(f"!document.querySelector('[data-lease=\"{lease}\"]')")
    assert page.evaluate(KEYS) == []
    page.reload()
    assert page.input_value("textarea") == ""


def test_a_draft_never_lands_in_another_task(page, transactional_db):
    project, _ = _caption_project(images=2)
    lease = _open(page, project)
    page.locator("textarea").focus()
    page.keyboard.type(DRAFT)
    # The lease runs out while the tab is away (closed laptop): its task goes back to the pool,
    # and this annotator never gets it again; a reload shows another task.
    Lease.objects.filter(pk=lease).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_reclaim(project=project) == 1
    page.reload()
    other = page.get_attribute("[data-task-kind=caption]", "data-lease")
    assert other != lease
    assert page.input_value("textarea") == ""
    # Typing there keeps its own draft beside the old one, which a day's age removes.
    page.locator("textarea").focus()
    page.keyboard.type("two dogs")
    page.reload()
    assert page.input_value("textarea") == "two dogs"


def test_a_refused_caption_keeps_its_draft(page, transactional_db):
    project, _ = _caption_project(images=1)
    lease = _open(page, project)
    page.locator("textarea").focus()
    page.keyboard.type("dog")  # too short: the server sends the same task back with the text
    with page.expect_response(lambda r: "/submit" in r.url and r.request.method == "POST"):
        page.keyboard.press("Enter")
    page.wait_for_selector("[data-feedback] li.error")
    assert page.input_value("textarea") == "dog"
    assert page.get_attribute("[data-task-kind=caption]", "data-lease") == lease
    assert not Judgment.objects.exists()
    page.reload()
    assert page.input_value("textarea") == "dog"


def test_drafts_go_when_the_annotator_logs_out(page, transactional_db):
    project, _ = _caption_project(images=2)
    _open(page, project)
    page.locator("textarea").focus()
    page.keyboard.type(DRAFT)
    page.wait_for_function(f"{KEYS}.length === 1")
    page.click("form[data-logout] button[type=submit]")
    page.wait_for_url("**/accounts/login/**")
    # Nothing of it is left for the next person on this browser.
    assert page.evaluate(KEYS) == []
    assert DRAFT not in page.evaluate("JSON.stringify(localStorage)")


def test_a_page_for_nobody_logged_in_clears_drafts_left_behind(page, transactional_db):
    # A logout from another tab or an expired session never submits this tab's logout form.
    page.goto("/accounts/login/")
    page.evaluate("localStorage.setItem('concord:draft:x:1:2', 'left behind')")
    page.goto("/accounts/login/")
    assert page.evaluate(KEYS) == []
