"""The pair list and image grid pages: filters in the URL, errors shown, actions on a selection."""

import pytest
from django.urls import reverse

from annotate.models import Task
from datasets.browse.filters import BAD_CURSOR
from datasets.models import Pair

pytestmark = pytest.mark.django_db


def test_pair_list_filters_and_links_the_same_query_everywhere(client, manager, world):
    client.force_login(manager)
    url = reverse("pair-list", kwargs={"slug": world.project.slug})
    page = client.get(url, {"q": "black", "label": "no_match"})
    html = page.content.decode()
    assert page.status_code == 200
    assert [p.pk for p in page.context["page"].pairs] == [world.pn.pk]
    assert f'data-pair="{world.pn.pk}"' in html and f'data-pair="{world.p0.pk}"' not in html
    assert page.context["query"] == "q=black&label=no_match"
    api = reverse("api-pairs", kwargs={"slug": world.project.slug})
    assert f"<code data-api-query>{api}?q=black&amp;label=no_match</code>" in html
    assert 'aria-current="page">Pairs' in html


def test_the_form_s_blank_fields_redirect_to_the_shareable_url(client, manager, world):
    client.force_login(manager)
    url = reverse("pair-list", kwargs={"slug": world.project.slug})
    response = client.get(url + "?q=cat&label=&status=&sort=-id")
    assert response.status_code == 302
    assert response["Location"] == url + "?q=cat"
    assert client.get(url + "?sort=id").status_code == 200
    grid = reverse("image-grid", kwargs={"slug": world.project.slug})
    assert client.get(grid + "?q=&flagged=yes")["Location"] == grid + "?flagged=yes"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("label=maybe", "label"),
        ("q=a%00b", "q"),
        ("confidence_min=" + "9" * 4000, "confidence_min"),
        ("cursor=AAAA", "cursor"),
        ("annotator=nobody", "annotator"),
    ],
)
def test_a_bad_filter_is_a_message_on_the_page(client, manager, world, query, param):
    client.force_login(manager)
    for name in ("pair-list", "image-grid"):
        url = reverse(name, kwargs={"slug": world.project.slug})
        page = client.get(url + "?" + query)
        assert page.status_code == 400
        html = page.content.decode()
        assert f'data-filter-error="{param}"' in html
    page = client.get(reverse("pair-list", args=[world.project.slug]) + "?cursor=AAAA")
    assert BAD_CURSOR.replace("(", "").split(" ")[0] in page.content.decode()


def test_grid_filters_by_caption_text_and_flags(client, manager, world):
    client.force_login(manager)
    url = reverse("image-grid", kwargs={"slug": world.project.slug})
    page = client.get(url, {"q": "snow"})
    assert [i.pk for i in page.context["page"].images] == [world.images[2].pk]
    empty = client.get(url, {"q": "zebra"}).content.decode()
    assert "data-no-images" in empty and "No images yet" not in empty
    assert client.get(url, {"sort": "confidence"}).status_code == 400


def test_an_action_from_the_page_acts_on_the_filtered_selection(client, manager, world):
    client.force_login(manager)
    act = reverse("pairs-act", kwargs={"slug": world.project.slug})
    # First the count to confirm, nothing done yet.
    asked = client.post(act, {"query": "kind=random_negative", "action": "exclude"})
    assert asked.status_code == 200 and asked.context["count"] == 1
    assert 'name="confirmed" value="1"' in asked.content.decode()
    assert not Pair.objects.filter(excluded_from_releases=True).exists()
    everything = client.post(act, {"query": "", "action": "gold"}).content.decode()
    assert "every pair of the project" in everything
    assert not Task.objects.filter(is_gold=True).exists()
    response = client.post(
        act, {"query": "kind=random_negative", "action": "exclude", "confirmed": "1"}
    )
    assert response.status_code == 302
    assert response["Location"].endswith("?kind=random_negative")
    assert list(Pair.objects.filter(excluded_from_releases=True)) == [world.pn]
    page = client.get(response["Location"]).content.decode()
    assert "Exclude from releases: 1 pair done." in page

    bad = client.post(act, {"query": "label=maybe", "action": "exclude"})
    assert bad.status_code == 400 and "label: Must be one of" in bad.content.decode()
    unknown = client.post(act, {"query": "", "action": "drop"})
    assert unknown.status_code == 400 and "Unknown action." in unknown.content.decode()
    assert Pair.objects.filter(excluded_from_releases=True).count() == 1


@pytest.mark.parametrize(
    ("form", "shown"),
    [
        ({"query": "&&&==", "action": "gold"}, ["(no name): A parameter has no name"]),
        (
            {"query": "gold=maybe&captions_min=%00", "action": "drop"},
            ["captions_min: Text must be", "gold: Must be one of", "action: Unknown action."],
        ),
        ({"query": "gold=yes&gold=no", "action": "gold"}, ["gold: Given twice"]),
        ({"query": "q=%ED%A0%80", "action": "gold"}, ["q: Not valid UTF-8"]),
        ({"query": "", "action": ["gold", "ungold"]}, ["action: Given twice"]),
    ],
)
def test_action_form_errors_answer_400_listing_every_one(client, manager, world, form, shown):
    client.force_login(manager)
    act = reverse("pairs-act", kwargs={"slug": world.project.slug})
    response = client.post(act, {**form, "confirmed": "1"})
    page = response.content.decode()
    assert response.status_code == 400
    assert [message in page for message in shown] == [True] * len(shown)
    assert not Task.objects.filter(is_gold=True).exists()


def test_an_empty_selection_has_nothing_to_confirm(client, manager, world):
    client.force_login(manager)
    act = reverse("pairs-act", kwargs={"slug": world.project.slug})
    response = client.post(act, {"query": "q=zebra", "action": "gold"})
    page = response.content.decode()
    assert response.status_code == 200 and "data-nothing-to-do" in page
    assert "data-confirm" not in page.replace("data-confirm-action", "")


def test_a_nul_is_never_echoed_into_the_filter_form(client, manager, world):
    client.force_login(manager)
    url = reverse("pair-list", kwargs={"slug": world.project.slug})
    response = client.get(url + "?gold=maybe&captions_min=%00")
    assert response.status_code == 400
    assert "\x00" not in response.content.decode()
    assert response.content.decode().count("data-filter-error=") == 2
