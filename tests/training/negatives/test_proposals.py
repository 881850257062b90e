"""Proposals from the three sources, on real rows: exclusions, quotas, what text edits make."""

import pytest

from annotate.queue.services.pool import tasks_open
from datasets.curation.services.cleaning import captions_check
from datasets.ingest.services.uploads import caption_create
from datasets.models import (
    Caption,
    CaptionFlag,
    ClusterMember,
    DuplicateCluster,
    Pair,
    PairKind,
    Source,
)
from tests import factories
from training.negatives.models import Outcome, Proposal, ProposalSource
from training.negatives.services import proposals


def _captioned(project, seed, *texts):
    image = factories.image(project=project, seed=seed)
    for text in texts:
        caption_create(image=image, text=text, source=Source.API)
    return image


def _cluster(canonical, *members):
    cluster = DuplicateCluster.objects.create(
        project=canonical.project, canonical=canonical, size=1 + len(members), doubt=2
    )
    for image in (canonical, *members):
        ClusterMember.objects.create(image=image, cluster=cluster)
    return cluster


def _proposed(project, source):
    return {
        (p.pair.image_id, p.pair.caption.text)
        for p in Proposal.objects.filter(project=project, source=source).select_related(
            "pair__caption"
        )
    }


@pytest.fixture
def scene(project):
    """a and c carry the same caption text; b is a's near-duplicate (held back); d differs."""
    project.negatives_random_per_image = 5
    project.save()
    a = _captioned(project, 1, "A dog runs on the grass")
    b = _captioned(project, 2, "A sleeping cat on a sofa")
    c = _captioned(project, 3, "a dog runs on the grass.")
    d = _captioned(project, 4, "A red car parked by the road")
    _cluster(a, b)
    return {"a": a, "b": b, "c": c, "d": d}


def test_random_never_proposes_own_cluster_or_same_text(project, scene):
    made = proposals.random_propose(project=project, seed=0)
    found = _proposed(project, ProposalSource.RANDOM)
    a, c, d = scene["a"], scene["c"], scene["d"]
    # a and c may only get d's caption (each other's text is theirs too); the duplicate b gets
    # nothing and its caption is never a candidate; d may get a's and c's.
    assert found == {
        (a.pk, "A red car parked by the road"),
        (c.pk, "A red car parked by the road"),
        (d.pk, "A dog runs on the grass"),
        (d.pk, "a dog runs on the grass."),
    }
    assert made == 4
    kinds = set(Pair.objects.filter(proposal__isnull=False).values_list("kind", flat=True))
    assert kinds == {PairKind.RANDOM_NEGATIVE}


def test_quota_counts_pending_proposals_only(project):
    project.negatives_random_per_image = 1
    project.save()
    images = [_captioned(project, seed, f"Caption number {seed} of a scene") for seed in range(6)]
    assert proposals.random_propose(project=project, seed=1) == 6
    assert proposals.random_propose(project=project, seed=2) == 0  # nothing judged: no top-up
    decided = Proposal.objects.filter(pair__image=images[0]).get()
    Proposal.objects.filter(pk=decided.pk).update(
        outcome=Outcome.NEGATIVE, decided_at="2026-01-01T00:00Z"
    )
    assert proposals.random_propose(project=project, seed=3) == 1
    assert Proposal.objects.filter(pair__image=images[0]).count() == 2


def test_text_edits_are_negatives_that_never_count_as_descriptions(project):
    project.negatives_random_per_image = 0
    project.negatives_text_edit_per_image = 1
    project.captions_per_image = 2
    project.save()
    image = _captioned(project, 1, "A black dog is running through the grass")
    assert proposals.text_edit_propose(project=project, seed=0) == 1
    proposal = Proposal.objects.select_related("pair__caption").get()
    caption = proposal.pair.caption
    assert caption.image_id == image.pk
    assert caption.source == Source.TEXT_EDIT
    assert proposal.pair.kind == PairKind.TEXT_EDIT_NEGATIVE
    assert proposal.edit_type
    assert caption.text != "A black dog is running through the grass"
    # It is close to the original on purpose: not flagged as a repeat, so it can be released.
    captions_check(image_ids=[image.pk])
    assert not CaptionFlag.objects.filter(caption=caption).exists()
    # It does not count toward the image's captions, and gets no one-by-one verify task.
    tasks_open(project=project)
    caption_task = image.tasks.get(kind="caption")
    assert caption_task.target == 1
    assert not image.tasks.filter(kind="verify", pair=proposal.pair).exists()
    # A rerun with the proposal pending adds nothing; no duplicate edit texts ever.
    assert proposals.text_edit_propose(project=project, seed=0) == 0
    assert Caption.objects.filter(image=image, source=Source.TEXT_EDIT).count() == 1


def test_text_edits_follow_the_project_language(project):
    project.negatives_random_per_image = 0
    project.negatives_text_edit_per_image = 1
    project.language = "zh"
    project.save()
    _captioned(project, 1, "两只黑狗在草地上玩红色的球。")

    assert proposals.text_edit_propose(project=project, seed=0) == 1
    (text,) = (t for _, t in _proposed(project, ProposalSource.TEXT_EDIT))
    assert text != "两只黑狗在草地上玩红色的球。" and len(text) == len(
        "两只黑狗在草地上玩红色的球。"
    )


def test_no_text_edits_where_no_lexicon_exists_but_random_ones_still_come(project):
    project.negatives_random_per_image = 1
    project.negatives_text_edit_per_image = 1
    project.language = "hi"
    project.save()
    _captioned(project, 1, "क्या यह एक कुत्ता है जो दौड़ रहा है")
    _captioned(project, 2, "दो बच्चे समुद्र तट पर खेल रहे हैं")

    assert proposals.text_edit_propose(project=project, seed=0) == 0
    assert proposals.random_propose(project=project, seed=0) == 2
