"""Cancel and Retry of mining from the Negatives page (managers only, 409 with the reason when
there is nothing to stop or retry): a message sent before the cancel mines nothing, and a run
cancelled while it works stops at its next step with every written row whole."""

from collections import Counter

import pytest
from django.urls import reverse

from annotate.models import ChallengeOption, Task, TaskKind
from datasets.ingest.services.uploads import caption_create
from datasets.models import Source
from tests import factories
from tests.training.negatives.test_mining_recovery import _take
from training.negatives.models import Proposal
from training.negatives.services import mining


@pytest.fixture
def seeded(project):
    project.trusted_sources = [Source.COCO]
    project.negatives_random_per_image = 2
    project.negatives_text_edit_per_image = 0
    project.save()
    for seed in range(5):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=f"Scene {seed} with things in it", source=Source.COCO)
    return project


def _url(name, project):
    return reverse(name, kwargs={"slug": project.slug})


@pytest.mark.django_db
def test_cancel_and_retry_from_the_page(
    client, seeded, manager, annotator, django_capture_on_commit_callbacks
):
    project = seeded
    _take("training")
    client.force_login(manager)
    refused = client.post(_url("mining-cancel", project))
    assert refused.status_code == 409
    assert mining.ERROR_NOT_CANCELLABLE.format(status="not asked for") in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(_url("negatives", project))  # Mine now
    assert _take("training") == 1
    page = client.get(_url("negatives", project)).content.decode()
    assert 'data-mining="queued"' in page and "data-cancel" in page
    client.force_login(annotator)
    assert client.post(_url("mining-cancel", project)).status_code == 403
    client.force_login(manager)

    assert client.post(_url("mining-cancel", project)).status_code == 302
    state = mining.mining_state(project=project)
    assert (state.status, state.error) == (
        "cancelled",
        mining.ERROR_CANCELLED.format(user=manager.username),
    )
    # The message sent before the cancel mines nothing and leaves it cancelled, and so does
    # the same message delivered again (Redis hands an unacked message back after a timeout).
    assert mining.mining_run_leased(project_id=project.pk) is None
    assert mining.mining_run_leased(project_id=project.pk) is None
    assert Proposal.objects.count() == 0
    assert mining.mining_state(project=project).status == "cancelled"
    page = client.get(_url("negatives", project)).content.decode()
    assert 'data-mining="cancelled"' in page and "data-retry" in page and "Cancelled by" in page
    assert client.post(_url("mining-cancel", project)).status_code == 409

    assert client.post(_url("mining-retry", project)).status_code == 302
    assert mining.mining_state(project=project).status == "queued"
    assert _take("training") == 1
    result = mining.mining_run_leased(project_id=project.pk)
    assert result is not None and result.proposals.random == 10
    assert mining.mining_state(project=project).status == "done"
    refused = client.post(_url("mining-retry", project))
    assert refused.status_code == 409
    assert mining.ERROR_NOT_RETRYABLE.format(status="done") in refused.content.decode()


@pytest.mark.django_db
def test_a_run_cancelled_while_it_mines_stops_and_a_retry_tops_up(seeded, manager):
    project = seeded
    stages = []

    def cancel_at_the_challenges(stage):
        stages.append(stage)
        if stage.startswith("challenges"):
            mining.mining_cancel(project=project, by=manager)

    mined = mining.mining_run_leased(project_id=project.pk, on_stage=cancel_at_the_challenges)
    assert mined is None
    assert stages == ["random proposals", "text-edit proposals", "challenges 0/5"]
    # Every proposal it wrote is whole and pending; no challenge item was started.
    assert Proposal.objects.filter(project=project).count() == 10
    assert not Task.objects.filter(project=project, kind=TaskKind.CHALLENGE).exists()
    state = mining.mining_state(project=project)
    assert (state.status, state.error) == (
        "cancelled",
        mining.ERROR_CANCELLED.format(user=manager.username),
    )

    mining.mining_retry(project=project)
    result = mining.mining_run_leased(project_id=project.pk)
    assert (result.proposals.random, result.challenges) == (0, 5)  # topped up: nothing doubled
    per_image = Counter(
        Proposal.objects.filter(project=project).values_list("pair__image_id", flat=True)
    )
    assert set(per_image.values()) == {2}
    options = ChallengeOption.objects.filter(task__project=project, is_check=False)
    assert options.count() == len(set(options.values_list("pair_id", flat=True))) == 10
    assert mining.mining_state(project=project).status == "done"
