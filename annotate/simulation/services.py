"""The crowd simulator against the real queue: simulated annotators of known reliability ask
for work with ``assignment_get`` and answer with ``judgment_submit``, like people in browsers.

Truth comes from how pairs were made: a positive pair whose caption was imported or uploaded is
a true match; a random, model-mined or text-edit negative a true non-match (the source
dataset's own assumption: a caption written for another image, or edited, does not describe
this one; the simulator cannot know the real false negatives among them, so it finds positives
only by mistake). Annotators' captions have no known truth, so simulated annotators skip them,
as they skip caption tasks. Challenge items are answered caption by caption.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from annotate.agreement.services.consensus import consensus_recompute, max_judgments
from annotate.models import Answer, ChallengeOption, ItemLabel, TaskKind
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get, lease_skip
from annotate.queue.services.pool import tasks_open
from annotate.simulation.crowd import CrowdSpec, score_labels, simulate_annotators, simulate_answer
from datasets.models import Caption, Membership, Pair, PairKind, Project, Role, Source

LABELS = (0, 1)
NEGATIVE_KINDS = (
    PairKind.RANDOM_NEGATIVE,
    PairKind.HARD_NEGATIVE,
    PairKind.TEXT_EDIT_NEGATIVE,
)
ANSWERS = {1: Answer.MATCH, 0: Answer.NO_MATCH}


@dataclass(frozen=True)
class CrowdReport:
    annotators: int
    spammers: int
    items: int
    judgments: int
    rounds: int
    negatives_created: int
    majority_vote_accuracy: float
    dawid_skene_accuracy: float
    scored_items: int


def random_negatives_create(*, project: Project, seed: int) -> int:
    """Pair each image with a caption of another image, never one of its own captions' texts.

    Returns how many pairs were created; pairs that already exist are left alone.
    """
    rng = random.Random(seed)
    captions = list(
        Caption.objects.filter(image__project=project)
        .exclude(source=Source.ANNOTATOR)
        .order_by("id")
        .values_list("id", "image_id", "text")
    )
    own: dict[int, set[str]] = {}
    for _, image_id, text in captions:
        own.setdefault(image_id, set()).add(text)
    if len(own) < 2:
        return 0
    pairs = []
    for image_id in sorted(own):
        for _ in range(10):  # a few tries to find a caption from elsewhere
            caption_id, other, text = captions[rng.randrange(len(captions))]
            if other != image_id and text not in own[image_id]:
                pairs.append(
                    Pair(image_id=image_id, caption_id=caption_id, kind=PairKind.RANDOM_NEGATIVE)
                )
                break
    before = Pair.objects.filter(image__project=project).count()
    Pair.objects.bulk_create(pairs, ignore_conflicts=True)
    return Pair.objects.filter(image__project=project).count() - before


def pair_truth(*, project: Project) -> dict[int, int]:
    """Known labels: imported positives match, random negatives do not."""
    truth = {}
    rows = Pair.objects.filter(image__project=project).values_list("pk", "kind", "caption__source")
    for pair_id, kind, source in rows:
        if kind in NEGATIVE_KINDS:
            truth[pair_id] = 0
        elif kind == PairKind.POSITIVE and source != Source.ANNOTATOR:
            truth[pair_id] = 1
    return truth


def crowd_simulate(
    *,
    project: Project,
    annotators: int,
    spammer_fraction: float,
    seed: int,
    judgments_per_item: int | None = None,
    challenges_only: bool = False,
) -> CrowdReport:
    """Run a simulated crowd over the project until the queue has nothing left for it (disputed
    items reopened by recomputes included), then score the aggregated labels against the truth."""
    if judgments_per_item is not None:
        Project.objects.filter(pk=project.pk).update(
            judgments_per_item=judgments_per_item,
            max_judgments_per_item=max(judgments_per_item, project.max_judgments_per_item),
        )
        project.refresh_from_db()
    negatives = 0
    # challenges_only: answer the challenge items there are, opening no other tasks.
    if not challenges_only:
        random_made = Pair.objects.filter(image__project=project, kind=PairKind.RANDOM_NEGATIVE)
        if not random_made.exists():
            negatives = random_negatives_create(project=project, seed=seed)
        tasks_open(project=project, seed=seed)
    truth = pair_truth(project=project)

    crowd = simulate_annotators(
        spec=CrowdSpec(annotators=annotators, spammer_fraction=spammer_fraction), seed=seed
    )
    users = _crowd_users(project=project, count=annotators)
    rng = np.random.default_rng(seed)
    order = random.Random(seed)
    judgments = 0
    rounds = 0
    while rounds < max_judgments(project) - project.judgments_per_item + 2:
        rounds += 1
        active = list(range(annotators))
        while active:
            order.shuffle(active)
            for position in list(active):
                lease = assignment_get(
                    project=project, annotator=users[position], lookahead=0, rng=order
                )
                if lease.current is None:
                    active.remove(position)
                    continue
                lease = lease.current
                task = lease.task
                if task.kind == TaskKind.CHALLENGE:
                    judgments += _challenge_answer(
                        lease=lease, annotator=crowd[position], truth=truth, rng=rng
                    )
                    continue
                known = truth.get(task.pair_id) if task.kind == TaskKind.VERIFY else None
                if known is None:
                    lease_skip(lease=lease)
                    continue
                label, seconds = simulate_answer(
                    annotator=crowd[position], true_label=known, labels=LABELS, rng=rng
                )
                judgment_submit(
                    lease=lease,
                    answer=ANSWERS[label],
                    now=(lease.shown_at or timezone.now()) + timedelta(seconds=seconds),
                )
                judgments += 1
        if consensus_recompute(project=project).reopened == 0:
            break

    labelled = ItemLabel.objects.filter(project=project, pair_id__in=list(truth))
    ds = dict(labelled.exclude(label=None).values_list("pair_id", "label"))
    mv = dict(labelled.exclude(mv_label=None).values_list("pair_id", "mv_label"))
    ds_score = score_labels(predicted=ds, truth=truth)
    mv_score = score_labels(predicted=mv, truth=truth)
    return CrowdReport(
        annotators=annotators,
        spammers=sum(a.kind.endswith("spammer") for a in crowd),
        items=len(truth),
        judgments=judgments,
        rounds=rounds,
        negatives_created=negatives,
        majority_vote_accuracy=mv_score.accuracy,
        dawid_skene_accuracy=ds_score.accuracy,
        scored_items=ds_score.items,
    )


def _challenge_answer(*, lease, annotator, truth: dict[int, int], rng) -> int:
    """Mark each caption the simulated annotator takes for a match (the check is a match)."""
    marked, spent = [], 0.0
    for option in ChallengeOption.objects.filter(task=lease.task):
        known = 1 if option.is_check else truth.get(option.pair_id, 0)
        label, seconds = simulate_answer(
            annotator=annotator, true_label=known, labels=LABELS, rng=rng
        )
        spent += seconds
        if label == 1:
            marked.append(option.pk)
    judgment_submit(
        lease=lease,
        answer=Answer.CHALLENGE,
        marked=marked,
        now=(lease.shown_at or timezone.now()) + timedelta(seconds=spent),
    )
    return 1


@transaction.atomic
def _crowd_users(*, project: Project, count: int) -> list:
    User = get_user_model()
    users = []
    for number in range(count):
        user, created = User.objects.get_or_create(
            username=f"sim-{project.slug}-{number:03d}"[:150]
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        Membership.objects.get_or_create(
            project=project, user=user, defaults={"role": Role.ANNOTATOR}
        )
        users.append(user)
    return users
