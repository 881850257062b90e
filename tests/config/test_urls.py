"""Every integer in a URL path stays within 64 bits (QA finding 5): past it the path is a 404,
on SQLite too (which raises OverflowError for such a value in a foreign key's lookup)."""

import re

import pytest
from django.test import Client
from django.urls import Resolver404, URLResolver, get_resolver, resolve, reverse

from config.urls import ID_MAX
from tests import factories

pytestmark = pytest.mark.django_db


def _routes(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern)


@pytest.fixture
def admin_client(project):
    client = Client(raise_request_exception=False)
    client.force_login(factories.user("root", is_staff=True, is_superuser=True))
    return client


def test_integers_past_64_bits_in_any_path_are_404_never_500(admin_client, project):
    """Every URL pattern with an integer, that integer past 64 bits (the others real), GET and
    POST as an administrator (who passes every access check): 404 or 405, never a 500."""
    tried, failures = 0, []
    routes = [route for route in _routes(get_resolver().url_patterns) if "<int:" in route]
    assert len(routes) >= 20, routes
    for route in routes:
        for huge in (str(ID_MAX + 1), str(10**30)):
            url = "/" + re.sub(r"<int:\w+>", huge, route)
            url = url.replace("<slug:slug>", project.slug).replace("<path:name>", "pairs.jsonl")
            assert "<" not in url, url
            for method in ("get", "post"):
                response = getattr(admin_client, method)(url)
                tried += 1
                if response.status_code not in (404, 405):
                    failures.append(f"{method.upper()} {url}: {response.status_code}")
    assert tried and not failures, failures


def test_the_largest_64_bit_id_still_resolves(admin_client, project):
    url = reverse("project-member-unlock", args=[project.slug, ID_MAX])
    assert resolve(url).kwargs["user_id"] == ID_MAX
    # It reaches the view, which finds no such member.
    assert admin_client.post(url).status_code == 404
    with pytest.raises(Resolver404):
        resolve(url.replace(str(ID_MAX), str(ID_MAX + 1)))
