"""QA finding 4: pairs nobody answered became "pending" after the first recompute (the data
browser's status=unjudged went from 718 to 0), and the Disputed page listed them with "2 votes so
far; waiting for 3 more judgments" beside "No answers yet" (the 2 were a challenge's check marks).
Through the real queue, recompute, pair API and Disputed page."""

import re

import pytest
from django.urls import reverse

from annotate.agreement.selectors import item_state_counts
from annotate.agreement.services.consensus import consensus_recompute
from annotate.models import ChallengeOption, ItemLabel, Task, TaskKind
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from datasets.models import Project
from tests import factories
from tests.annotate.agreement.test_item_states import _pairs

pytestmark = pytest.mark.django_db


def _statuses(client, project, status):
    url = reverse("api-pairs", kwargs={"slug": project.slug})
    response = client.get(url, {"status": status})
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_pairs_nobody_answered_stay_unjudged_and_votes_agree_with_the_answers(client, manager):
    project = factories.project(
        manager=manager, name="Unjudged", judgments_per_item=3, max_judgments_per_item=5
    )
    crowd = [factories.user(f"u{number}") for number in range(3)]
    for user in crowd:
        factories.member(project=project, user=user, role="annotator")
    verify = factories.verify_tasks(project=project, count=4, target=3)
    answered, untouched, check_pair = (verify[0].pair, verify[1].pair, verify[2].pair)
    [[_shown, proposal]] = _pairs(project=project, images=1, per_image=2, tag="u")
    # A challenge whose check is a verified positive with its own (unanswered) verify task.
    challenge = Task.objects.create(
        project=project,
        kind=TaskKind.CHALLENGE,
        image_id=check_pair.image_id,
        pair=check_pair,
        target=3,
        random_key=1,
    )
    check, _option = ChallengeOption.objects.bulk_create(
        [
            ChallengeOption(task=challenge, pair=check_pair, position=0, is_check=True),
            ChallengeOption(task=challenge, pair=proposal, position=1),
        ]
    )
    client.force_login(manager)
    unjudged_before = _statuses(client, project, "unjudged")
    assert {answered.pk, untouched.pk, check_pair.pk} <= unjudged_before

    Project.objects.filter(pk=project.pk).update(gold_rate=0.0, challenge_rate=1.0)
    project.refresh_from_db()
    for user in crowd[:2]:  # two challenge answers: the check marked, the proposal not
        lease = assignment_get(project=project, annotator=user, lookahead=0).current
        assert lease.task_id == challenge.pk
        judgment_submit(lease=lease, answer="challenge", marked=[check.pk])
    Project.objects.filter(pk=project.pk).update(challenge_rate=0.0)
    project.refresh_from_db()
    # Two verify answers on one pair: its task goes first, as a started one would.
    Task.objects.filter(pk=verify[0].pk).update(priority=1)
    for user in crowd[:2]:
        lease = assignment_get(project=project, annotator=user, lookahead=0).current
        assert lease.task_id == verify[0].pk
        judgment_submit(lease=lease, answer="match")

    consensus_recompute(project=project)

    unjudged_after = _statuses(client, project, "unjudged")
    assert untouched.pk in unjudged_after and proposal.pk not in unjudged_after
    assert check_pair.pk in unjudged_after  # only check marks: no vote, no answer listed
    assert answered.pk not in unjudged_after
    assert not ItemLabel.objects.filter(pair=check_pair).exists()
    pending = _statuses(client, project, "pending")
    assert answered.pk in pending and check_pair.pk not in pending
    counts = item_state_counts(project=project)
    assert counts["pending"] == len(pending)

    url = reverse("agreement-disputed", kwargs={"slug": project.slug})
    html = client.get(url, {"state": "pending"}).content.decode()
    listed = {int(p) for p in re.findall(r'data-pair="(\d+)"', html)}
    assert check_pair.pk not in listed and answered.pk in listed
    assert "No answers yet" not in html
    # QA finding 6: each page says what it counts.
    assert "pairs nobody has answered yet are in none" in html
    assert "gold pairs count under Decided" in html
    item = ItemLabel.objects.get(pair=answered)
    assert item.judgments == 2
    assert "2 votes so far; waiting for 1 more judgment." in html
