"""A manager invites people from the Members page (one link copied, a list at once, one
revoked); the invited person opens the link, chooses a username and password and lands on the
annotate page with a task on it. Every page visited runs under the Content-Security-Policy
with no violation: no inline script or style is left, and the pages' scripts still work."""

from django.contrib.auth import get_user_model

from annotate.queue.services.pool import tasks_open
from datasets.ingest.services.uploads import caption_create
from datasets.models import Invitation, Membership
from tests import factories
from tests.e2e.conftest import log_in

PASSWORD = "a very long new passphrase"


def _watch_csp(page, violations: list) -> None:
    def on_console(message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: violations.append(f"{page.url}: {error}"))


def test_manager_invites_and_the_person_lands_on_the_annotate_page(
    browser, live_server, transactional_db
):
    manager = factories.user("maria")
    # One caption per image is enough: only verification tasks, answered by one key.
    project = factories.project(manager=manager, name="Harbour", captions_per_image=1)
    for seed in range(3):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=f"A boat in the harbour number {seed}", source="api")
    tasks_open(project=project, seed=5)
    violations: list[str] = []

    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    _watch_csp(page, violations)
    log_in(page, "maria", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/members/")
    assert page.locator("table.invitations").count() == 0
    page.fill("textarea[name=people]", "ada@example.org\nBob from the night shift\nnot-an-email@")
    page.select_option("select[name=role]", "annotator")
    page.click("button:has-text('Create invitations')")
    page.wait_for_selector("text=2 invitations created")
    assert "Line 3 (not-an-email@): not a valid email address" in page.content()
    rows = page.locator("table.invitations tbody tr")
    assert rows.count() == 2
    # Bob's is revoked; Ada's link is copied from its field.
    bob = page.locator("table.invitations tr", has_text="Bob from the night shift")
    bob.locator("button:has-text('Revoke')").click()
    page.wait_for_selector("text=Invitation withdrawn")
    assert page.locator("table.invitations tbody tr").count() == 1
    link = (
        page.locator("table.invitations tr", has_text="ada@example.org")
        .locator("input[data-copy-source]")
        .input_value()
    )
    assert link.startswith(live_server.url + "/accounts/invitations/")
    # The copy button came to life (copy.js ran under the policy).
    assert page.locator("button[data-copy]").first.is_visible()
    # The other pages a manager uses, under the same policy.
    for path in ("/", f"/projects/{project.slug}/", "/accounts/tokens/", "/api/v1/docs/"):
        page.goto(path)
    page.wait_for_selector(".swagger-ui .info", timeout=20_000)  # its script is a file now
    context.close()

    newcomer = browser.new_context(base_url=live_server.url)
    page = newcomer.new_page()
    page.set_default_timeout(15_000)
    _watch_csp(page, violations)
    page.goto(link)
    assert "Join Harbour" in page.content()
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button:has-text('Create my account and join')")
    page.wait_for_url(f"**/projects/{project.slug}/annotate/")
    page.wait_for_selector("[data-task-kind=verify]")
    # htmx and the annotator's script run: a key answers the task in place.
    lease = page.get_attribute("[data-task-kind]", "data-lease")
    page.locator("body").focus()
    page.keyboard.press("1")
    page.wait_for_selector(f'[data-lease="{lease}"]', state="detached")
    # The link was single use.
    page.goto(link)
    assert "already been used" in page.content()
    newcomer.close()

    ada = get_user_model().objects.get(username="ada")
    assert Membership.objects.get(project=project, user=ada).role == "annotator"
    assert ada.email == "ada@example.org"
    assert Invitation.objects.get(email="ada@example.org").accepted_by == ada
    assert not violations, violations


def test_every_page_runs_under_the_content_security_policy(
    browser, live_server, transactional_db, settings, tmp_path
):
    """Each page a person opens, as the manager (an administrator for the admin) and signed out:
    the policy header is there and the browser reports no violation."""
    from datasets.accounts import services as accounts
    from datasets.releases import services as releases
    from training.registry.models import ModelVersion

    settings.CONCORD_RELEASES_ROOT = tmp_path / "releases"
    manager = factories.user("maria", is_staff=True, is_superuser=True)
    project = factories.project(manager=manager, name="Harbour")
    images = [factories.image(project=project, seed=seed) for seed in range(3)]
    for n, image in enumerate(images):
        caption_create(image=image, text=f"A boat in the harbour number {n}", source="api")
    tasks_open(project=project, seed=5)
    release = releases.release_build(
        release_id=releases.release_request(
            project=project,
            user=manager,
            options=releases.release_options(project=project, formats=["jsonl"]),
        ).pk
    )
    ModelVersion.objects.create(project=project, release=release)
    [line] = accounts.invitations_create(
        project=project, lines=[(1, "x@example.org")], role="annotator", created_by=manager
    )
    invitation = (
        "/accounts/invitations/" + accounts.invitation_token(invitation=line.invitation) + "/"
    )
    slug = project.slug
    signed_in = [
        "/",
        f"/projects/{slug}/",
        f"/projects/{slug}/settings/",
        f"/projects/{slug}/members/",
        f"/projects/{slug}/upload/",
        f"/projects/{slug}/images/",
        f"/projects/{slug}/images/{images[0].pk}/",
        f"/projects/{slug}/duplicates/",
        f"/projects/{slug}/quality/",
        f"/projects/{slug}/releases/",
        f"/projects/{slug}/releases/v{release.version}/",
        f"/projects/{slug}/models/",
        f"/projects/{slug}/negatives/",
        f"/projects/{slug}/agreement/",
        f"/projects/{slug}/agreement/disputed/",
        f"/projects/{slug}/annotate/",
        "/projects/new/",
        "/accounts/tokens/",
        "/accounts/password_change/",
        "/admin/",
        f"/admin/datasets/project/{project.pk}/change/",
        "/admin/axes/accessattempt/",
    ]
    signed_out = ["/accounts/login/", "/accounts/password_reset/", invitation]
    violations: list[str] = []
    for pages, user in ((signed_out, None), (signed_in, "maria")):
        context = browser.new_context(base_url=live_server.url)
        page = context.new_page()
        page.set_default_timeout(15_000)
        _watch_csp(page, violations)
        if user:
            log_in(page, user, factories.PASSWORD)
        for path in pages:
            response = page.goto(path)
            assert response.status == 200, path
            assert "script-src 'self'" in response.headers["content-security-policy"], path
            page.wait_for_load_state("load")
        context.close()
    assert not violations, violations
