import pytest
from django.urls import reverse

from datasets.browse.views import GRID_PAGE_SIZE
from datasets.ingest.services.uploads import caption_create
from datasets.models import Project, Role
from datasets.projects.services import LAST_MANAGER
from tests import factories

pytestmark = pytest.mark.django_db


def test_manager_creates_a_project_from_the_form(client, manager):
    client.force_login(manager)
    response = client.post(
        reverse("project-create"),
        {
            "name": "Kitchen objects",
            "description": "",
            "guidelines": "Be *precise*.",
            "captions_per_image": 4,
            "judgments_per_item": 3,
            "gold_rate": 0.1,
            "challenge_rate": 0.95,
            "agreement_threshold": 0.7,
        },
    )
    assert response.status_code == 200  # re-rendered with the error
    assert "cannot exceed 1" in response.content.decode()
    assert not Project.objects.exists()
    response = client.post(
        reverse("project-create"),
        {
            "name": "Kitchen objects",
            "guidelines": "Be *precise*.",
            "captions_per_image": 4,
            "judgments_per_item": 3,
            "gold_rate": 0.1,
            "challenge_rate": 0.1,
            "agreement_threshold": 0.7,
            "caption_min_words": 3,
            "caption_max_words": 30,
            "caption_banned_openings": "There is",
        },
    )
    project = Project.objects.get()
    assert project.banned_openings == ["There is"]
    assert response.status_code == 302 and response["Location"].endswith(
        f"/projects/{project.slug}/"
    )
    page = client.get(response["Location"]).content.decode()
    assert "<em>precise</em>" in page


def test_guidelines_markdown_is_sanitised(client, project, annotator):
    project.guidelines = "Hello <script>alert(1)</script> <img src=x onerror=alert(2)> **bold**"
    project.save()
    client.force_login(annotator)
    page = client.get(reverse("project-detail", kwargs={"slug": project.slug})).content.decode()
    assert "<strong>bold</strong>" in page
    assert "<script>alert(1)" not in page and "onerror" not in page


def test_captions_are_escaped_in_pages(client, project, manager):
    image = factories.image(project=project)
    caption_create(image=image, text="<script>alert('x')</script> a cat", source="api")
    client.force_login(manager)
    for name, kwargs in (
        ("image-grid", {"slug": project.slug}),
        ("image-detail", {"slug": project.slug, "image_id": image.pk}),
    ):
        page = client.get(reverse(name, kwargs=kwargs)).content.decode()
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; a cat" in page
        assert "<script>alert(" not in page


def test_grid_pages_by_keyset(client, project, manager):
    for seed in range(GRID_PAGE_SIZE + 3):
        factories.image(project=project, seed=seed)
    client.force_login(manager)
    url = reverse("image-grid", kwargs={"slug": project.slug})
    first = client.get(url)
    assert first.content.decode().count('class="tile"') == GRID_PAGE_SIZE
    cursor = first.context["page"].next_cursor
    second = client.get(url, {"cursor": cursor.encode()})
    assert second.content.decode().count('class="tile"') == 3
    assert second.context["page"].next_cursor is None


def test_members_change_role_and_the_last_manager_stays(client, project, manager, outsider):
    factories.member(project=project, user=outsider, role=Role.ANNOTATOR)
    client.force_login(manager)
    url = reverse("project-members", kwargs={"slug": project.slug})
    client.post(url, {"username": "outsider", "role": Role.MANAGER})
    assert project.memberships.get(user=outsider).role == Role.MANAGER
    client.post(url, {"username": "outsider", "role": Role.ANNOTATOR})
    assert project.memberships.get(user=outsider).role == Role.ANNOTATOR
    client.post(url, {"username": "outsider", "role": Role.MANAGER})

    remove = reverse("project-member-remove", kwargs={"slug": project.slug, "user_id": outsider.pk})
    client.post(remove)
    assert not project.memberships.filter(user=outsider).exists()
    last = reverse("project-member-remove", kwargs={"slug": project.slug, "user_id": manager.pk})
    response = client.post(last, follow=True)
    assert LAST_MANAGER in response.content.decode()
    assert project.memberships.filter(user=manager, role=Role.MANAGER).exists()


def test_login_page_and_redirects(client, manager):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(
        reverse("login"), {"username": "manager", "password": factories.PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == reverse("home")


def test_settings_page_edits_every_group_and_checks_rules_across_them(client, project, manager):
    client.force_login(manager)
    url = reverse("project-settings", kwargs={"slug": project.slug})
    page = client.get(url).content.decode()
    for group in ("Annotation", "Duplicates and quality", "Releases"):
        assert f"<summary>{group}</summary>" in page
    bad = client.post(url, {"name": project.name, "split_train": 0.8})
    assert "must add up to 1" in bad.content.decode()
    client.post(
        url,
        {
            "name": project.name,
            "split_train": 0.8,
            "split_val": 0.05,
            "split_test": 0.15,
            "near_duplicate_threshold": 6,
            "trusted_sources": ["coco", "manifest"],
        },
    )
    project.refresh_from_db()
    assert (project.split_train, project.near_duplicate_threshold) == (0.8, 6)
    assert project.trusted_sources == ["coco", "manifest"]
    assert project.judgments_per_item == 3  # left out of the POST: unchanged


def test_home_cards_show_counts_progress_and_role(client, project, manager, annotator):
    """Issue 15: each project card says how much there is, how far it is and who you are in it,
    in a fixed number of queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotate.queue.services.judgments import judgment_submit
    from annotate.queue.services.leases import assignment_get

    factories.verify_tasks(project=project, count=4, target=1)
    lease = assignment_get(project=project, annotator=annotator, lookahead=0).current
    judgment_submit(lease=lease, answer="match")
    factories.project(manager=manager, name="Second")
    client.force_login(manager)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("home"))
    html = page.content.decode()
    cards = page.context["projects"]
    assert [card.project.name for card in cards] == ["Second", "Street scenes"]
    street = cards[1]
    assert (street.role, street.images, street.tasks, street.complete) == ("manager", 4, 4, 1)
    assert street.percent_done == 25 and street.open_for_you == 3
    assert "4 images · 4 tasks, 1 done (25%) · 3 open" in html
    few = len(queries)
    factories.project(manager=manager, name="Third")
    with CaptureQueriesContext(connection) as more:
        client.get(reverse("home"))
    assert len(more) == few  # no query per project
    client.force_login(annotator)
    html = client.get(reverse("home")).content.decode()
    assert "data-role>annotator<" in html and "Start annotating" in html and "Second" not in html
