"""The pair list API and its actions: same query as the page, 400 naming a bad parameter."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotate.agreement.services.consensus import consensus_recompute
from annotate.models import ItemLabel, Task, TaskKind
from datasets.browse import services
from datasets.browse.filters import Cursor

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(manager):
    client = APIClient()
    client.force_authenticate(manager)
    return client


def _url(world, name="api-pairs"):
    return reverse(name, kwargs={"slug": world.project.slug})


def test_lists_filtered_pairs_with_their_fields(api, world):
    response = api.get(_url(world), {"label": "no_match", "sort": "id"})
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [r["id"] for r in rows] == [world.p1.pk, world.pn.pk]
    assert rows[0]["status"] == "waiting" and rows[0]["agreement"] == 0.5
    assert rows[1]["score"] == 0.9 and rows[1]["kind"] == "random_negative"
    assert response.json()["next"] is None


def test_next_links_walk_every_page(api, world, monkeypatch):
    monkeypatch.setattr("datasets.browse.apis.API_PAGE_SIZE", 2)
    url, seen = _url(world) + "?sort=-confidence", []
    while url:
        body = api.get(url).json()
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    assert seen == [world.p0.pk, world.p3.pk, world.pn.pk, world.p1.pk]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("lable=match", "lable"),
        ("label=maybe", "label"),
        ("q=cat%00dog", "q"),
        ("status=%00", "status"),
        ("confidence_min=2", "confidence_min"),
        ("confidence_min=NaN", "confidence_min"),
        ("captions_min=" + "9" * 5000, "captions_min"),
        ("score_max=1e999", "score_max"),
        ("sort=caption", "sort"),
        ("cursor=bm90LWpzb24", "cursor"),
        ("cursor=" + Cursor(sort="id", value=None, id=1).encode(), "cursor"),
        ("annotator=nobody", "annotator"),
    ],
)
def test_bad_parameters_answer_400_naming_them(api, world, query, param):
    response = api.get(_url(world) + "?" + query)
    # Every API error: a "detail" sentence, and the bad parameter by name (datasets.api).
    assert response.status_code == 400
    assert set(response.json()) == {"detail", param}
    post = api.post(
        _url(world, "api-pairs-act") + "?" + query, {"action": "exclude"}, format="json"
    )
    assert post.status_code == 400 and set(post.json()) == {"detail", param}


def test_odd_bytes_in_the_url_never_500(api, world):
    # Django decodes invalid UTF-8 (a lone surrogate's bytes) as U+FFFD: a plain search.
    for query in ("q=%ED%A0%80", "q=%FF%FE", "license=%ED%BF%BF", "annotator=%C0"):
        response = api.get(_url(world) + "?" + query)
        assert response.status_code in (200, 400), query
        assert response["Content-Type"].startswith("application/json")


def test_actions_apply_to_the_filtered_selection(api, world):
    url = _url(world, "api-pairs-act")
    response = api.post(url + "?label=match", {"action": "gold"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["done"] == 2
    gold = Task.objects.filter(is_gold=True, kind=TaskKind.VERIFY)
    assert set(gold.values_list("pair_id", "gold_answer")) == {
        (world.p0.pk, "match"),
        (world.p3.pk, "match"),
    }
    again = api.post(url + "?label=match", {"action": "gold"}, format="json").json()
    assert again["done"] == 0 and again["skipped"] == {services.SKIP_ALREADY: 2}

    none = api.post(url + "?label=none", {"action": "gold"}, format="json").json()
    assert none["skipped"] == {services.SKIP_NO_LABEL: 2}

    response = api.post(url + "?q=snow", {"action": "adjudicate"}, format="json").json()
    assert response["done"] == 2
    assert set(ItemLabel.objects.filter(needs_manager=True).values_list("pair_id", flat=True)) == {
        world.p1.pk,
        world.p2.pk,
        world.p2b.pk,
    }
    waiting = api.get(_url(world) + "?status=waiting").json()["results"]
    assert {r["id"] for r in waiting} == {world.p1.pk, world.p2.pk, world.p2b.pk}

    response = api.post(url + "?status=agreed", {"action": "requeue"}, format="json").json()
    assert response["done"] == 0 and response["skipped"] == {services.SKIP_GOLD: 1}
    response = api.post(url + "?flagged=yes", {"action": "requeue"}, format="json").json()
    assert response["done"] == 1
    task = Task.objects.get(pair=world.p1, kind=TaskKind.VERIFY)
    assert task.target == task.judgment_count + task.lease_count + 1 and task.is_open

    response = api.post(url + "?kind=random_negative", {"action": "exclude"}, format="json")
    assert response.json()["done"] == 1
    excluded = api.get(_url(world) + "?excluded=yes").json()["results"]
    assert [r["id"] for r in excluded] == [world.pn.pk]

    bad = api.post(url, {"action": "delete"}, format="json")
    assert bad.status_code == 400 and "action" in bad.json()

    # A recompute derives needs_manager from the votes; the manager's request survives it.
    # (p1 was only written "waiting" by the fixture; its votes do not keep it there.)
    consensus_recompute(project=world.project)
    waiting = api.get(_url(world) + "?status=waiting").json()["results"]
    assert {r["id"] for r in waiting} == {world.p2.pk, world.p2b.pk}


def test_a_selection_over_the_limit_is_refused_whole(api, world, monkeypatch):
    monkeypatch.setattr(services, "MAX_SELECTION", 3)
    response = api.post(_url(world, "api-pairs-act"), {"action": "exclude"}, format="json")
    assert response.status_code == 400
    assert "Narrow the filter" in response.json()["detail"]
    assert not world.project.images.filter(pairs__excluded_from_releases=True).exists()


def test_annotators_cannot_list_or_act(world, annotator):
    client = APIClient()
    client.force_authenticate(annotator)
    assert client.get(_url(world)).status_code == 403
    assert (
        client.post(_url(world, "api-pairs-act"), {"action": "gold"}, format="json").status_code
        == 403
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "ungold", "gold": "maybe"}, "gold"),
        ({"action": "exclude", "label": "no_match"}, "label"),
        ({"action": "ungold", "bogus": 1}, "bogus"),
        ({"action": "ungold", "query": "gold=yes"}, "query"),
        ({"action": "ungold", "captions_min": [1]}, "captions_min"),
    ],
)
def test_a_body_field_other_than_action_is_refused_naming_it(api, world, body, field):
    # Filters go in the query string only; one in the body was dropped and the action ran on
    # every pair of the project.
    response = api.post(_url(world, "api-pairs-act"), body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert not world.project.images.filter(pairs__excluded_from_releases=True).exists()


def test_a_cursor_on_an_action_is_refused(api, world):
    page = api.get(_url(world), {"sort": "id"})
    assert page.status_code == 200
    cursor = Cursor(sort="-id", value=None, id=world.p3.pk).encode()
    response = api.post(
        _url(world, "api-pairs-act") + "?cursor=" + cursor, {"action": "exclude"}, format="json"
    )
    assert response.status_code == 400
    assert "whole filtered selection" in response.json()["cursor"][0]
    assert not world.project.images.filter(pairs__excluded_from_releases=True).exists()


@pytest.mark.parametrize(
    ("query", "param", "words"),
    [
        ("gold=yes&gold=no", "gold", "twice"),
        ("q=red&label=match&q=blue", "q", "twice"),
        ("q=%ED%A0%80", "q", "UTF-8"),
        ("license=%ED%BF%BF", "license", "UTF-8"),
        ("q=%C0%AF", "q", "UTF-8"),
        ("&&&==", "(no name)", "no name"),
    ],
)
def test_a_parameter_twice_or_not_utf8_is_refused(api, world, query, param, words):
    response = api.get(_url(world) + "?" + query)
    assert response.status_code == 400
    assert words in response.json()[param][0]
    post = api.post(
        _url(world, "api-pairs-act") + "?" + query, {"action": "exclude"}, format="json"
    )
    assert post.status_code == 400 and words in post.json()[param][0]


def test_a_form_body_giving_action_twice_is_refused(api, world):
    response = api.post(
        _url(world, "api-pairs-act"),
        "action=gold&action=ungold",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400 and "twice" in response.json()["action"][0]


@pytest.mark.parametrize(
    "body",
    [
        '{"action": "gold", "action": "exclude"}',
        '{"action": "exclude", "\\ud800": 1, "\\ud800": 2}',
        '[{"a": 1, "a": 2}]',
    ],
)
def test_a_json_body_giving_a_key_twice_is_refused(api, world, body):
    # json.loads keeps the last of two equal keys: the first action would have been dropped
    # without a word (the project-wide JSON parser now refuses it, at any depth).
    response = api.post(_url(world, "api-pairs-act"), body, content_type="application/json")
    assert response.status_code == 400
    assert "twice" in response.json()["detail"]
    assert not world.project.images.filter(pairs__excluded_from_releases=True).exists()


def test_rows_say_gold_and_the_label_in_the_filters_words(api, world):
    acted = api.post(
        _url(world, "api-pairs-act") + "?label=match", {"action": "gold"}, format="json"
    )
    assert acted.json()["done"] == 2
    rows = {r["id"]: r for r in api.get(_url(world)).json()["results"]}
    assert {pk for pk, r in rows.items() if r["gold"] is True} == {world.p0.pk, world.p3.pk}
    assert all(r["gold"] is False for pk, r in rows.items() if pk not in {world.p0.pk, world.p3.pk})
    words = {1: "match", 0: "no_match", None: "none"}
    assert all(r["label_name"] == words[r["label"]] for r in rows.values())
    # The words are the filter's: label_name=X rows are exactly what ?label=X lists.
    for word in ("match", "no_match", "none"):
        listed = {r["id"] for r in api.get(_url(world), {"label": word}).json()["results"]}
        assert listed == {pk for pk, r in rows.items() if r["label_name"] == word}
