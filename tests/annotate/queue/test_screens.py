"""The annotator's page and the queue API, through real requests."""

import re

import pytest
from django.urls import reverse

from annotate.models import Judgment, Lease, Task
from annotate.queue.caption_rules import BANNED_OPENING
from annotate.queue.services.pool import gold_set
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def tasks(project):
    return factories.verify_tasks(project=project, count=5)


def test_page_without_javascript_answers_and_redirects(client, project, annotator, tasks):
    client.force_login(annotator)
    page = client.get(reverse("annotate", kwargs={"slug": project.slug}))
    lease = page.context["lease"]
    assert page.status_code == 200 and lease is not None
    assert lease.task.pair.caption.text in page.content.decode()
    submit = reverse("annotate-submit", kwargs={"slug": project.slug, "lease_id": lease.pk})
    response = client.post(submit, {"answer": "no_match", "image_unusable": "on"})
    assert response.status_code == 302
    judgment = Judgment.objects.get()
    assert (judgment.answer, judgment.image_unusable, judgment.caption_offensive) == (
        "no_match",
        True,
        False,
    )
    # The same form posted again (back button, double click) changes nothing.
    client.post(submit, {"answer": "match"})
    assert Judgment.objects.get().answer == "no_match"


def test_htmx_swap_returns_only_the_workspace(client, project, annotator, tasks):
    client.force_login(annotator)
    lease = client.get(reverse("annotate", kwargs={"slug": project.slug})).context["lease"]
    response = client.post(
        reverse("annotate-submit", kwargs={"slug": project.slug, "lease_id": lease.pk}),
        {"answer": "match"},
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="workspace"') and "<html" not in body
    assert 'data-hotkey="z"' in body  # the undo control is offered
    assert f'data-lease="{lease.pk}"' not in body and "data-lease=" in body


def test_caption_rules_keep_the_text_and_say_why(client, project, annotator):
    project.captions_per_image = 1
    project.save()
    factories.image(project=project)
    from annotate.queue.services.pool import tasks_open

    tasks_open(project=project)
    client.force_login(annotator)
    lease = client.get(reverse("annotate", kwargs={"slug": project.slug})).context["lease"]
    url = reverse("annotate-submit", kwargs={"slug": project.slug, "lease_id": lease.pk})
    response = client.post(
        url, {"answer": "caption", "caption_text": "There is a dog on the grass"}
    )
    assert response.context["problems"] == [BANNED_OPENING.format(opening="There is")]
    page = response.content.decode()
    assert "start with" in page
    assert "There is a dog on the grass</textarea>" in page
    assert not Judgment.objects.exists()
    client.post(url, {"answer": "caption", "caption_text": "A brown dog runs on the grass"})
    judgment = Judgment.objects.get()
    assert judgment.caption.text == "A brown dog runs on the grass"
    assert judgment.caption.author == annotator


def _lease_shown(response) -> int:
    return int(re.search(r'data-lease="(\d+)"', response.content.decode()).group(1))


@pytest.mark.parametrize("htmx", [True, False])
def test_undoing_a_caption_brings_its_text_back_and_a_refusal_never_says_saved(
    client, project, annotator, htmx
):
    """Issue 15: undo restores the written caption in its box; "Saved. Undo" shows beside a
    saved answer only, never beside a caption the server refused."""
    project.captions_per_image = 2
    project.save()
    factories.image(project=project)
    factories.image(project=project, seed=1)
    from annotate.queue.services.pool import tasks_open

    tasks_open(project=project)
    client.force_login(annotator)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    lease = client.get(reverse("annotate", kwargs={"slug": project.slug})).context["lease"]
    url = reverse("annotate-submit", kwargs={"slug": project.slug, "lease_id": lease.pk})
    text = "A black triangle above a   green circle"
    saved = client.post(url, {"answer": "caption", "caption_text": text}, follow=True, **headers)
    assert "Saved." in saved.content.decode()
    # The next caption breaks a rule: the refusal shows without any "Saved. Undo".
    following = _lease_shown(saved)
    assert following != lease.pk
    refused = client.post(
        reverse("annotate-submit", kwargs={"slug": project.slug, "lease_id": following}),
        {"answer": "caption", "caption_text": "There is a dog"},
        follow=True,
        **headers,
    )
    page = refused.content.decode()
    assert "start with" in page and "Saved." not in page and 'data-hotkey="z"' not in page

    undo = reverse("annotate-undo", kwargs={"slug": project.slug})
    back = client.post(undo, follow=True, **headers)
    assert _lease_shown(back) == lease.pk
    assert f">{text}</textarea>" in back.content.decode()
    assert "Caption undone" in back.content.decode()
    assert not Judgment.objects.exists()
    # Shown once: a reload afterwards is the plain task again.
    again = client.get(reverse("annotate", kwargs={"slug": project.slug}))
    assert f">{text}</textarea>" not in again.content.decode()


def test_gold_answers_never_reach_the_annotator(client, project, annotator):
    tasks = factories.verify_tasks(project=project, count=3)
    for task in tasks:
        gold_set(pair=task.pair, answer="no_match")
    factories.verify_tasks(project=project, count=2, first_seed=20_000)
    project.gold_rate = 1.0
    project.save()
    client.force_login(annotator)
    page = client.get(reverse("annotate", kwargs={"slug": project.slug}))
    assert page.context["task"].is_gold
    body = page.content.decode()
    assert "no_match" in body  # the button value exists...
    assert "gold" not in body.lower()  # ...but nothing marks the item or its answer
    api = client.post(reverse("api-task-next", kwargs={"slug": project.slug})).json()
    assert set(api) == {
        "lease_id",
        "expires_at",
        "kind",
        "image_id",
        "image_url",
        "caption",
        "options",  # a challenge's captions; None for a pair
    }
    assert api["options"] is None
    assert "gold" not in str(api).lower()


def test_api_next_submit_skip_heartbeat(client, project, annotator, tasks):
    client.force_login(annotator)
    next_url = reverse("api-task-next", kwargs={"slug": project.slug})
    first = client.post(next_url).json()
    assert client.post(next_url).json()["lease_id"] == first["lease_id"]  # same until answered
    submit = reverse("api-lease-submit", kwargs={"lease_id": first["lease_id"]})
    created = client.post(submit, {"answer": "match"}, content_type="application/json")
    repeat = client.post(submit, {"answer": "match"}, content_type="application/json")
    assert (created.status_code, repeat.status_code) == (201, 200)
    assert repeat.json()["judgment_id"] == created.json()["judgment_id"]
    bad = client.post(submit, {"answer": "maybe"}, content_type="application/json")
    assert bad.status_code == 400

    second = client.post(next_url).json()
    skip = client.post(reverse("api-lease-skip", kwargs={"lease_id": second["lease_id"]}))
    assert skip.status_code == 204
    assert Lease.objects.get(pk=second["lease_id"]).state == "skipped"
    refused = client.post(
        reverse("api-lease-submit", kwargs={"lease_id": second["lease_id"]}),
        {"answer": "match"},
        content_type="application/json",
    )
    assert refused.status_code == 409 and "skipped" in refused.json()["detail"]
    beat = client.post(reverse("api-task-heartbeat", kwargs={"slug": project.slug}))
    assert beat.json()["renewed"] == 0  # nothing held after the skip (the API leases no lookahead)
    client.post(next_url)
    beat = client.post(reverse("api-task-heartbeat", kwargs={"slug": project.slug}))
    assert beat.json()["renewed"] == 1


def test_api_leases_of_others_are_not_found(client, project, annotator, manager, tasks):
    client.force_login(annotator)
    lease_id = client.post(reverse("api-task-next", kwargs={"slug": project.slug})).json()[
        "lease_id"
    ]
    client.force_login(manager)
    response = client.post(
        reverse("api-lease-submit", kwargs={"lease_id": lease_id}),
        {"answer": "match"},
        content_type="application/json",
    )
    assert response.status_code == 404
    assert not Judgment.objects.exists()


def test_empty_queue_says_so(client, project, annotator):
    client.force_login(annotator)
    page = client.get(reverse("annotate", kwargs={"slug": project.slug})).content.decode()
    assert "Nothing to do right now" in page
    assert 'hx-trigger="every 60s"' in page


def test_managers_open_tasks_in_the_background(
    client, project, manager, django_capture_on_commit_callbacks
):
    factories.image(project=project)
    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("tasks-open", kwargs={"slug": project.slug}))
    assert response.status_code == 302 and len(callbacks) == 1
    assert not Task.objects.exists()  # nothing done in the request itself
