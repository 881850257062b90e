"""One vote per (item, annotator), whatever path gave an annotator a second judgment on a pair
(QA: the recompute failed on every run with "N judgments repeat an (item, annotator) pair"), and
the queue not handing out a verify or gold task on a pair its annotator judged in a challenge.
Through the real queue, the data browser's actions and the recompute."""

import pandas as pd
import pytest

from annotate.agreement.services.consensus import consensus_recompute, one_vote_each
from annotate.models import ChallengeOption, ItemLabel, Judgment, Task, TaskKind
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from datasets.browse.services import selection_act
from datasets.models import Project
from tests import factories
from tests.annotate.agreement.test_item_states import _pairs

pytestmark = pytest.mark.django_db


def _crowd(project, count):
    users = [factories.user(f"v{number}") for number in range(count)]
    for user in users:
        factories.member(project=project, user=user, role="annotator")
    return users


def _challenge(project, check, proposal):
    task = Task.objects.create(
        project=project,
        kind=TaskKind.CHALLENGE,
        image_id=check.image_id,
        pair=check,
        target=2,
        random_key=1,
    )
    return task, ChallengeOption.objects.bulk_create(
        [
            ChallengeOption(task=task, pair=check, position=0, is_check=True),
            ChallengeOption(task=task, pair=proposal, position=1),
        ]
    )


def _rates(project, *, gold, challenge):
    Project.objects.filter(pk=project.pk).update(gold_rate=gold, challenge_rate=challenge)
    project.refresh_from_db()


def _next(project, user):
    return assignment_get(project=project, annotator=user, lookahead=0).current


def test_a_proposal_judged_on_its_verify_task_and_in_its_challenge_counts_once(manager):
    """A proposal in a challenge is sent for one more judgment (a verify task of its own); one
    annotator answers that task and then the challenge: two ordinary judgments on one pair. The
    recompute counts the first one and succeeds."""
    project = factories.project(
        manager=manager, name="Twice", judgments_per_item=2, max_judgments_per_item=3
    )
    _rates(project, gold=0.0, challenge=0.0)
    first, second = _crowd(project, 2)
    [[check, proposal]] = _pairs(project=project, images=1, per_image=2, tag="t")
    challenge, (check_option, proposal_option) = _challenge(project, check, proposal)
    outcome = selection_act(project=project, pair_ids=[proposal.pk], action="requeue", by=manager)
    assert outcome.done == 1
    verify = Task.objects.get(pair=proposal, kind=TaskKind.VERIFY)

    lease = _next(project, first)
    assert lease.task_id == verify.pk  # the verify walk comes first at a challenge rate of 0
    earlier = judgment_submit(lease=lease, answer="no_match").judgment
    lease = _next(project, first)
    assert lease.task_id == challenge.pk
    judgment_submit(
        lease=lease, answer="challenge", marked=[check_option.pk, proposal_option.pk]
    )  # a match this time
    lease = _next(project, second)
    assert lease.task_id == challenge.pk
    judgment_submit(lease=lease, answer="challenge", marked=[check_option.pk, proposal_option.pk])
    assert Judgment.objects.filter(annotator=first).count() == 2

    consensus_recompute(project=project)  # raised ValueError: 1 judgments repeat …

    item = ItemLabel.objects.get(pair=proposal)
    # first's earlier no_match and second's match: a tie, not first's later match as well.
    assert item.judgments == 2
    assert item.status == "disputed"
    assert earlier.answer == "no_match"


def test_gold_on_a_pair_judged_in_a_challenge_goes_to_others_and_counts_after_ungold(manager):
    """QA: making agreed challenge proposals gold offered them as gold to the annotators who had
    judged them (scored against themselves), and after Remove from gold those answers are
    ordinary votes. The gold task goes to someone else; after un-gold the recompute succeeds
    and that answer is one more vote."""
    project = factories.project(
        manager=manager, name="Gold loop", judgments_per_item=2, max_judgments_per_item=3
    )
    _rates(project, gold=0.0, challenge=1.0)
    judged_a, judged_b, fresh = _crowd(project, 3)
    [[check, proposal]] = _pairs(project=project, images=1, per_image=2, tag="g")
    challenge, options = _challenge(project, check, proposal)
    for user in (judged_a, judged_b):
        lease = _next(project, user)
        assert lease.task_id == challenge.pk
        judgment_submit(lease=lease, answer="challenge", marked=[option.pk for option in options])
    consensus_recompute(project=project)
    proposal.refresh_from_db()
    assert proposal.label == 1

    outcome = selection_act(project=project, pair_ids=[proposal.pk], action="gold", by=manager)
    assert outcome.done == 1
    gold = Task.objects.get(pair=proposal, kind=TaskKind.VERIFY, is_gold=True)
    # Ordinary work besides, so that a gold draw may hand out gold at all.
    factories.verify_tasks(project=project, count=1, target=3)
    _rates(project, gold=1.0, challenge=0.0)

    lease = _next(project, judged_a)
    assert lease is not None and lease.task_id != gold.pk  # work instead: they judged it
    lease = _next(project, fresh)
    assert lease.task_id == gold.pk
    judgment_submit(lease=lease, answer="no_match")

    outcome = selection_act(project=project, pair_ids=[proposal.pk], action="ungold", by=manager)
    assert outcome.done == 1
    consensus_recompute(project=project)
    item = ItemLabel.objects.get(pair=proposal)
    assert item.judgments == 3  # two challenge marks and the answer given on gold
    # The task, an ordinary one again, is not handed to those who judged the pair either.
    _rates(project, gold=0.0, challenge=0.0)
    lease = _next(project, judged_b)
    assert lease is None or lease.task_id != gold.pk


def test_the_rule_picks_one_vote_per_item_and_annotator_in_every_case():
    """The pure rule: an ordinary vote over a check or gold answer, an answer given as work over
    one given on gold, then the earliest; unsure answers are no votes and never hide one."""
    columns = ["id", "task", "item", "annotator", "answer", "seconds", "is_gold", "on_gold"]
    rows = pd.DataFrame.from_records(
        [
            (1, 10, 100, 7, "match", 1.0, True, False),  # a check first
            (2, 11, 100, 7, "no_match", 1.0, False, False),  # counts: an ordinary vote
            (3, 12, 100, 7, "match", 1.0, False, False),  # a later repeat
            (4, 13, 200, 7, "unsure", 1.0, False, False),  # no vote, kept as it is
            (5, 14, 200, 7, "match", 1.0, False, True),  # given on gold: the only vote, counts
            (6, 15, 300, 7, "no_match", 1.0, False, True),  # given on gold …
            (7, 16, 300, 7, "match", 1.0, False, False),  # … loses to one given as work
            (8, 17, 300, 8, "match", 1.0, False, False),  # another annotator
        ],
        columns=columns,
    )
    kept = one_vote_each(rows)
    assert list(kept["id"]) == [2, 4, 5, 7, 8]
    assert one_vote_each(rows.iloc[0:0]).empty
