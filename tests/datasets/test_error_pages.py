"""Issue 15: error pages in the site's layout, saying why (the API keeps its JSON errors)."""

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.utils.html import escape

from datasets import access
from datasets.api import server_error

pytestmark = pytest.mark.django_db


def test_forbidden_and_not_found_pages_keep_the_layout_and_say_why(
    client, project, annotator, outsider
):
    url = reverse("agreement", kwargs={"slug": project.slug})
    client.force_login(annotator)
    forbidden = client.get(url)
    html = forbidden.content.decode()
    assert forbidden.status_code == 403
    assert 'class="topbar"' in html and annotator.username in html
    assert escape(access.NOT_A_MANAGER) in html and 'data-error="403"' in html
    client.force_login(outsider)
    missing = client.get(url)
    html = missing.content.decode()
    assert missing.status_code == 404 and access.NO_SUCH_PROJECT in html
    assert 'class="topbar"' in html and outsider.username in html
    nowhere = client.get("/no/such/page/")
    html = nowhere.content.decode()
    assert nowhere.status_code == 404 and "There is no page at /no/such/page/" in html
    # The API still answers in JSON.
    api = client.get(f"/api/v1/projects/{project.slug}/")
    assert api.status_code == 404 and api.json() == {"detail": access.NO_SUCH_PROJECT}


def test_the_server_error_page_keeps_the_layout():
    response = server_error(RequestFactory().get("/projects/x/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert 'class="topbar"' in html and 'data-error="500"' in html
    assert "in the server's log" in html
