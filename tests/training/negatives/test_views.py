"""The manager's negatives page and the annotator's challenge screen and API, over HTTP."""

import re

import pytest
from django.urls import reverse

from annotate.models import ChallengeMark, ChallengeOption, Judgment
from datasets.ingest.services.uploads import caption_create
from datasets.models import Source
from tests import factories
from training.negatives.models import Outcome, Proposal
from training.negatives.services import challenges, proposals


@pytest.fixture
def challenge(project):
    project.trusted_sources = [Source.COCO]
    project.negatives_random_per_image = 3
    project.negatives_text_edit_per_image = 0
    project.gold_rate = 0
    project.challenge_rate = 1.0
    project.save()
    for seed in range(4):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=f"Scene {seed} with things in it", source=Source.COCO)
    proposals.random_propose(project=project, seed=0)
    challenges.challenges_open(project=project, seed=0)
    return project


def test_annotator_page_shows_four_numbered_captions_without_the_answer(
    client, challenge, annotator
):
    client.force_login(annotator)
    page = client.get(reverse("annotate", kwargs={"slug": challenge.slug})).content.decode()
    assert "Mark every caption that describes the image." in page
    boxes = re.findall(r'name="marked" value="(\d+)" data-hotkey="(\d)"', page)
    assert [key for _, key in boxes] == ["1", "2", "3", "4"]
    # Nothing in the page tells the known positive apart.
    assert "is_check" not in page and "check" not in re.sub(r"checkbox|checked", "", page)
    option_ids = [int(option_id) for option_id, _ in boxes]
    lease_id = int(re.search(r'data-lease="(\d+)"', page).group(1))
    response = client.post(
        reverse("annotate-submit", kwargs={"slug": challenge.slug, "lease_id": lease_id}),
        {"answer": "challenge", "marked": [option_ids[0], option_ids[2]]},
    )
    assert response.status_code == 302
    judgment = Judgment.objects.get(lease_id=lease_id)
    marked = set(
        ChallengeMark.objects.filter(judgment=judgment, marked=True).values_list(
            "option_id", flat=True
        )
    )
    assert marked == {option_ids[0], option_ids[2]}


def test_api_next_and_submit(client, challenge, annotator):
    client.force_login(annotator)
    task = client.post(reverse("api-task-next", kwargs={"slug": challenge.slug})).json()
    assert task["kind"] == "challenge" and task["caption"] is None
    assert [o["number"] for o in task["options"]] == [1, 2, 3, 4]
    assert all(set(o) == {"number", "option_id", "text"} for o in task["options"])
    check = ChallengeOption.objects.get(task__leases__pk=task["lease_id"], is_check=True)
    url = reverse("api-lease-submit", kwargs={"lease_id": task["lease_id"]})
    response = client.post(
        url, {"answer": "challenge", "marked": [check.pk]}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert Judgment.objects.get(lease_id=task["lease_id"]).gold_correct is True


def test_manager_page_counts_by_source(client, challenge, manager):
    Proposal.objects.filter(pk=Proposal.objects.first().pk).update(
        outcome=Outcome.POSITIVE, decided_at="2026-01-01T00:00Z"
    )
    client.force_login(manager)
    page = client.get(reverse("negatives", kwargs={"slug": challenge.slug})).content.decode()
    row = re.search(r'<tr data-source="random">(.*?)</tr>', page, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[:6] == ["Random", "12", "12", "1", "0", "1"]
    assert 'data-chart="proposal-scores"' in page


def test_mining_settings_are_checked_and_saved_through_the_api(client, project, manager):
    client.force_login(manager)
    url = reverse("api-project", kwargs={"slug": project.slug})
    refused = client.patch(url, {"mining_margin": 3}, content_type="application/json")
    assert refused.status_code == 400 and "mining_margin" in refused.json()
    saved = client.patch(
        url,
        {"mining_margin": 0.2, "negatives_model_per_image": 4, "challenge_rate": 0.25},
        content_type="application/json",
    )
    assert saved.status_code == 200, saved.content
    project.refresh_from_db()
    assert (project.mining_margin, project.negatives_model_per_image) == (0.2, 4)
    page = client.get(reverse("project-settings", kwargs={"slug": project.slug})).content.decode()
    assert "Hard negatives" in page and 'name="negatives_text_edit_per_image"' in page


@pytest.mark.parametrize(("language", "shown"), [("hi", True), ("zh", False), ("en", False)])
def test_negatives_page_says_when_text_edits_are_not_available(
    client, project, manager, language, shown
):
    project.language = language
    project.save()
    client.force_login(manager)

    page = client.get(reverse("negatives", kwargs={"slug": project.slug})).content.decode()

    assert ("data-text-edits-unavailable" in page) is shown
    assert ("not available for this language" in page) is shown
    if shown:
        assert "Hindi" in page and "no promoted model: random only" in page
