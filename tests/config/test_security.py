"""No cache keeps what a signed-in person or an API client was sent (QA finding 10), and every
API error is JSON, with DEBUG on too (QA finding 11)."""

import pytest
from django.test import Client
from django.urls import reverse

from datasets.accounts import services
from tests import factories

pytestmark = pytest.mark.django_db


def _no_store(response) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    return {"no-store", "private"} <= directives


def test_secrets_and_private_pages_are_not_stored(client, project, manager):
    # The token API: a new token in the body, the list of tokens.
    created = client.post(
        reverse("api-token"),
        {"username": "manager", "password": factories.PASSWORD, "name": "script"},
        content_type="application/json",
    )
    assert created.status_code == 201 and _no_store(created)
    headers = {"HTTP_AUTHORIZATION": f"Token {created.json()['token']}"}
    assert _no_store(client.get(reverse("api-tokens"), **headers))
    assert _no_store(client.get(reverse("api-project", args=[project.slug]), **headers))
    # An error of the API, and one to an anonymous caller.
    assert _no_store(Client().get(reverse("api-projects")))
    # The token page with a new token on it, the Members page with invitation links.
    client.force_login(manager)
    page = client.post(reverse("tokens"), {"name": "laptop", "days": 30})
    assert page.context["created"] and _no_store(page)
    services.invitations_create(
        project=project, lines=[(1, "ada@example.org")], role="annotator", created_by=manager
    )
    members = client.get(reverse("project-members", args=[project.slug]))
    assert members.context["invitations"] and _no_store(members)
    assert _no_store(client.get(reverse("project-detail", args=[project.slug])))


def test_the_invitation_and_login_pages_are_not_stored_and_files_keep_their_own(project, manager):
    [line] = services.invitations_create(
        project=project, lines=[(1, "ada@example.org")], role="annotator", created_by=manager
    )
    token = services.invitation_token(invitation=line.invitation)
    visitor = Client()
    assert _no_store(visitor.get(reverse("invitation-accept", args=[token])))
    # The login page is Django's never_cache.
    assert _no_store(visitor.get(reverse("login")))
    # A stored file keeps the private max-age its view chose (config.storage).
    image = factories.image(project=project)
    visitor.force_login(manager)
    response = visitor.get(reverse("image-file", args=[project.slug, image.pk]))
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("private, max-age=")


@pytest.mark.parametrize("debug", [False, True])
def test_api_errors_are_json_with_debug_on_too(client, manager, settings, debug):
    settings.DEBUG = debug
    client.force_login(manager)
    for url in ("/api/v1/nothing/", "/api/v1/projects/no-such-project/", "/api/v1/leases/x/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"] == "application/json", (url, response.content[:200])
        assert response.json()["detail"]
    # Pages keep Django's HTML.
    page = client.get("/projects/no-such-project/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
