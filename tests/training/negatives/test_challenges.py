"""Challenge items end to end on real rows: bundling, the queue, answers as pair judgments,
aggregation into outcomes, and the next release."""

import pytest

from annotate.agreement.services.consensus import consensus_recompute
from annotate.models import ChallengeMark, ChallengeOption, Judgment, Task, TaskKind
from annotate.queue.services.judgments import SubmitRefused, judgment_submit
from annotate.queue.services.leases import assignment_get
from datasets.ingest.services.uploads import caption_create
from datasets.models import Pair, PairKind, Role, Source
from datasets.releases import services
from tests import factories
from training.negatives.models import Outcome, Proposal
from training.negatives.services import challenges, proposals


@pytest.fixture
def crowd(project):
    people = [factories.user(f"crowd{i}") for i in range(3)]
    for person in people:
        factories.member(project=project, user=person, role=Role.ANNOTATOR)
    return people


@pytest.fixture
def challenge_project(project):
    """Six imported images from a trusted source, three random proposals each, no other work."""
    project.trusted_sources = [Source.COCO]
    project.negatives_random_per_image = 3
    project.negatives_text_edit_per_image = 0
    project.judgments_per_item = 3
    project.gold_rate = 0
    project.challenge_rate = 1.0
    project.captions_per_image = 1
    project.save()
    for seed in range(6):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=f"Scene {seed} with things in it", source=Source.COCO)
    assert proposals.random_propose(project=project, seed=0) == 18
    return project


def test_bundles_three_proposals_with_one_verified_positive(challenge_project):
    assert challenges.challenges_open(project=challenge_project, seed=0) == 6
    assert challenges.challenges_open(project=challenge_project, seed=0) == 0  # all bundled
    for task in Task.objects.filter(kind=TaskKind.CHALLENGE):
        options = list(task.options.select_related("pair"))
        assert len(options) == 4
        check = [o for o in options if o.is_check]
        assert len(check) == 1 and check[0].pair_id == task.pair_id
        assert check[0].pair.kind == PairKind.POSITIVE
        assert all(o.pair.image_id == task.image_id for o in options)
        assert {o.position for o in options} == {0, 1, 2, 3}


def test_no_challenge_without_a_verified_positive(project):
    project.negatives_random_per_image = 1
    project.save()
    for seed in range(3):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=f"Untrusted caption {seed} here", source=Source.API)
    assert proposals.random_propose(project=project, seed=0) == 3
    assert challenges.challenges_open(project=project) == 0


def _answer(project, person, *, match_check=True, match=()):
    """Take the next task (a challenge) and mark the check and the given proposal pairs."""
    lease = assignment_get(project=project, annotator=person, lookahead=0).current
    assert lease.task.kind == TaskKind.CHALLENGE
    options = ChallengeOption.objects.filter(task=lease.task)
    marked = [o.pk for o in options if (o.is_check and match_check) or o.pair_id in match]
    return lease, judgment_submit(lease=lease, answer="challenge", marked=marked)


def test_answers_map_to_pair_judgments_and_the_check_scores_the_annotator(challenge_project, crowd):
    challenges.challenges_open(project=challenge_project, seed=0)
    lease, result = _answer(challenge_project, crowd[0], match_check=False)
    assert result.created
    assert result.judgment.gold_correct is False  # missed the known positive
    marks = ChallengeMark.objects.filter(judgment=result.judgment).select_related("option")
    assert len(marks) == 4 and not any(m.marked for m in marks)
    # Idempotent: the same lease again returns the first judgment and writes no more marks.
    again = judgment_submit(lease=lease, answer="challenge", marked=[])
    assert not again.created and again.judgment.pk == result.judgment.pk
    assert ChallengeMark.objects.filter(judgment=result.judgment).count() == 4
    _, passed = _answer(challenge_project, crowd[1])
    assert passed.judgment.gold_correct is True
    # Someone else's option id is refused, and nothing is recorded.
    lease = assignment_get(project=challenge_project, annotator=crowd[2], lookahead=0).current
    foreign = ChallengeOption.objects.exclude(task=lease.task).first()
    with pytest.raises(SubmitRefused):
        judgment_submit(lease=lease, answer="challenge", marked=[foreign.pk])
    assert not Judgment.objects.filter(lease=lease).exists()
    # A plain verify answer does not fit a challenge.
    with pytest.raises(SubmitRefused):
        judgment_submit(lease=lease, answer="match")


def test_judged_proposals_become_positives_or_verified_negatives_in_the_next_release(
    challenge_project, crowd, manager
):
    challenges.challenges_open(project=challenge_project, seed=0)
    task = Task.objects.filter(kind=TaskKind.CHALLENGE).order_by("random_key").first()
    proposals_of_task = list(
        ChallengeOption.objects.filter(task=task, is_check=False).values_list("pair_id", flat=True)
    )
    found_positive, *negatives = proposals_of_task
    # Everyone answers every challenge: the same proposal is marked a match throughout.
    for person in crowd:
        for _ in range(Task.objects.filter(kind=TaskKind.CHALLENGE).count()):
            _answer(challenge_project, person, match=(found_positive,))
    assert Task.objects.filter(kind=TaskKind.CHALLENGE, is_open=True).count() == 0
    consensus_recompute(project=challenge_project)

    positive = Proposal.objects.get(pair_id=found_positive)
    assert positive.outcome == Outcome.POSITIVE and positive.decided_at is not None
    assert Pair.objects.get(pk=found_positive).kind == PairKind.POSITIVE
    for pair_id in negatives:
        assert Proposal.objects.get(pair_id=pair_id).outcome == Outcome.NEGATIVE
        assert Pair.objects.get(pk=pair_id).kind == PairKind.RANDOM_NEGATIVE
    assert Proposal.objects.filter(outcome=Outcome.PENDING).count() == 0

    chosen = services.release_options(project=challenge_project)
    release = services.release_request(project=challenge_project, user=manager, options=chosen)
    release = services.release_build(release_id=release.pk)
    assert release.status == "ready", release.error
    import pandas as pd

    rows = pd.read_parquet(services.release_local_pairs(release=release) / "pairs.parquet")
    by_pair = rows.set_index("pair_id")
    assert by_pair.loc[found_positive, "kind"] == "positive"
    assert by_pair.loc[found_positive, "label"] == 1
    assert by_pair.loc[found_positive, "label_source"] == "crowd"
    for pair_id in negatives:
        assert by_pair.loc[pair_id, "label"] == 0
        assert by_pair.loc[pair_id, "label_source"] == "crowd"


def test_queue_mixes_challenges_at_the_rate_and_falls_back(challenge_project, crowd):
    challenges.challenges_open(project=challenge_project, seed=0)
    # Verify work exists too (the imported positives); rate 0: work first, challenges after.
    challenge_project.challenge_rate = 0.0
    challenge_project.save()
    from annotate.queue.services.pool import tasks_open

    tasks_open(project=challenge_project)
    verify = Task.objects.filter(kind=TaskKind.VERIFY, is_open=True).count()
    assert verify == 6
    kinds = []
    for _ in range(verify + 2):
        lease = assignment_get(project=challenge_project, annotator=crowd[0], lookahead=0).current
        kinds.append(lease.task.kind)
        judgment_submit(lease=lease, answer="match" if lease.task.kind == "verify" else "challenge")
    assert kinds == [TaskKind.VERIFY] * verify + [TaskKind.CHALLENGE] * 2
    # Rate 1: challenges first while any are left.
    challenge_project.challenge_rate = 1.0
    challenge_project.save()
    lease = assignment_get(project=challenge_project, annotator=crowd[1], lookahead=0).current
    assert lease.task.kind == TaskKind.CHALLENGE


def test_the_same_known_positive_in_two_challenges_counts_once(project, crowd):
    project.trusted_sources = [Source.COCO]
    project.negatives_random_per_image = 6
    project.negatives_text_edit_per_image = 0
    project.gold_rate = 0
    project.challenge_rate = 1.0
    project.save()
    for seed in range(8):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=f"Scene {seed} with things in it", source=Source.COCO)
    proposals.random_propose(project=project, seed=0)
    assert challenges.challenges_open(project=project, seed=0) == 16  # two per image
    person = crowd[0]
    for _ in range(16):
        _answer(project, person)
    result = consensus_recompute(project=project)
    row = next(r for r in result.snapshot.annotator_rows if r["id"] == person.pk)
    # Eight known positives, each seen twice: eight gold answers, all right.
    assert row["gold_items"] == 8
    assert row["gold_accuracy"] == 1.0
