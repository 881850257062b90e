"""The Disputed page's query: a bad ``?state=`` (or any other parameter) is said on the page with
a 400 naming it, as the data browser's filters do, instead of quietly showing another list."""

import re

import pytest
from django.urls import reverse

from annotate.agreement.selectors import (
    BAD_STATE,
    UNKNOWN_PARAM,
    ItemsQueryError,
    ItemState,
    items_state_parse,
)
from annotate.models import ItemLabel, ItemStatus
from datasets.ingest.services.uploads import caption_create
from datasets.models import Pair
from tests import factories


@pytest.fixture
def waiting_pair(project):
    image = factories.image(project=project)
    pair = Pair.objects.get(caption=caption_create(image=image, text="A dog", source="api"))
    ItemLabel.objects.create(
        project=project, pair=pair, status=ItemStatus.DISPUTED, needs_manager=True
    )
    return pair


def _page(client, project, query):
    return client.get(reverse("agreement-disputed", kwargs={"slug": project.slug}) + query)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("?state=%00", "state"),
        ("?state=waiting%00", "state"),
        ("?state=%ED%A0%80", "state"),  # a lone surrogate's bytes (Django decodes to U+FFFD)
        ("?state=%EF%BF%BD", "state"),
        ("?state=" + "w" * 100_000, "state"),
        ("?state=decided", "state"),
        ("?state=Waiting", "state"),
        ("?state=+waiting", "state"),
        ("?stat=waiting", "stat"),
        ("?pages=2", "pages"),
        ("?%00=1", "\\0"),
    ],
)
def test_a_bad_query_is_said_on_the_page_naming_the_parameter(
    client, manager, project, waiting_pair, query, param
):
    client.force_login(manager)
    response = _page(client, project, query)
    assert response.status_code == 400
    html = response.content.decode()
    error = re.search(r'<p class="message error" role="alert" data-query-error="([^"]*)">', html)
    assert error is not None, html[:500]
    assert error.group(1) == param
    message = BAD_STATE.format(choices=", ".join(ItemState.values))
    assert (message if param == "state" else UNKNOWN_PARAM) in html
    # Nothing listed as if the query had asked for it, and nothing claimed about it.
    assert f'data-pair="{waiting_pair.pk}"' not in html
    assert "No disputed items" not in html and "No items in this state" not in html
    assert len(html) < 100_000  # the value is not echoed back


@pytest.mark.django_db
def test_good_queries_still_list(client, manager, project, waiting_pair):
    client.force_login(manager)
    for query in ("", "?state=", "?state=waiting"):
        response = _page(client, project, query)
        assert response.status_code == 200, query
        assert f'data-pair="{waiting_pair.pk}"' in response.content.decode()
        assert "data-query-error" not in response.content.decode()
    agreed = _page(client, project, "?state=agreed")
    assert agreed.status_code == 200 and "No items in this state." in agreed.content.decode()


def test_the_parser_names_the_parameter():
    assert items_state_parse({}) == "" and items_state_parse({"state": "agreed"}) == "agreed"
    for params, name in (
        ({"state": "\ud800"}, "state"),
        ({"\ud800": "x"}, "?"),
        ({"x" * 500: "1"}, "x" * 50),
    ):
        with pytest.raises(ItemsQueryError) as raised:
            items_state_parse(params)
        assert raised.value.param == name


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "param", "words"),
    [
        ("?state=waiting&state=agreed", "state", "Given twice"),
        ("?state=waiting&page=1&page=2", "page", "Given twice"),
        ("?page=0", "page", "page number"),
        ("?state=agreed&page=two", "page", "page number"),
        ("?page=%00", "page", "page number"),
    ],
)
def test_a_parameter_twice_or_a_bad_page_is_said(
    client, manager, project, waiting_pair, query, param, words
):
    client.force_login(manager)
    response = _page(client, project, query)
    html = response.content.decode()
    assert response.status_code == 400
    assert f'data-query-error="{param}"' in html and words in html
    assert f'data-pair="{waiting_pair.pk}"' not in html


@pytest.mark.django_db
def test_every_item_of_a_state_is_reachable_page_by_page(client, manager, project, monkeypatch):
    monkeypatch.setattr("annotate.agreement.views.DISPUTED_PAGE_SIZE", 2)
    pairs = []
    for n in range(5):
        image = factories.image(project=project, seed=n + 1)
        pair = Pair.objects.get(
            caption=caption_create(image=image, text=f"A dog {n}", source="api")
        )
        ItemLabel.objects.create(project=project, pair=pair, status=ItemStatus.PENDING)
        pairs.append(pair.pk)
    client.force_login(manager)
    seen, query, pages = [], "?state=pending", 0
    while query is not None:
        html = _page(client, project, query).content.decode()
        pages += 1
        seen += [int(pk) for pk in re.findall(r'<article [^>]*data-pair="(\d+)"', html)]
        assert "of 5." in html
        found = re.search(r'href="(\?[^"]*)" rel="next"', html)
        query = found.group(1).replace("&amp;", "&") if found else None
    assert pages == 3 and sorted(seen) == sorted(pairs) and len(seen) == 5
    # Past the end: said (404), not "No items in this state" for a state that has five.
    past = _page(client, project, "?state=pending&page=4")
    assert past.status_code == 404
    html = past.content.decode()
    assert "Past the last page" in html and "(page 3)" in html
    assert "No items in this state" not in html
