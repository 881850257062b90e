"""Bundling pending proposals into challenge items for people to judge.

A challenge is one image, one of its verified positives (the attention check) and up to
``PROPOSALS_PER_CHALLENGE`` proposals of that image, mixed across sources so that no source's
negatives are always seen together. It is an ordinary task in the queue (kind challenge) with
the project's judgments per item as its target; annotate.queue.services.challenges takes the answers.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from annotate.models import (
    RANDOM_KEY_MAX,
    ChallengeOption,
    ItemLabel,
    ItemStatus,
    Task,
    TaskKind,
)
from datasets.curation.services.cleaning import captions_held_back, images_held_back
from datasets.models import Pair, PairKind, Project, Source
from training.negatives.models import Outcome, Proposal

PROPOSALS_PER_CHALLENGE = 3


def verified_positives(*, project: Project) -> dict[int, list[int]]:
    """Pair ids per image that may serve as a challenge's known positive: labelled a match by
    people, or from a source the project trusts and not disputed."""
    trusted = [str(s) for s in project.trusted_sources or []]
    disputed = ItemLabel.objects.filter(pair=OuterRef("pk"), status=ItemStatus.DISPUTED)
    pairs = (
        Pair.objects.filter(image__project=project, kind=PairKind.POSITIVE)
        .filter(Q(label=1) | Q(label__isnull=True, caption__source__in=trusted))
        .exclude(caption__source=Source.TEXT_EDIT)
        .exclude(captions_held_back(caption="caption"))
        .exclude(Exists(disputed))
        .values_list("image_id", "pk")
    )
    found: dict[int, list[int]] = defaultdict(list)
    for image_id, pair_id in pairs.iterator(chunk_size=5000):
        found[image_id].append(pair_id)
    return found


def challenges_open(
    *, project: Project, seed: int | None = None, check: Callable[[int, int], None] | None = None
) -> int:
    """Create challenge items for the pending proposals that are in none yet; returns how many.

    Images without a verified positive get none until one has been verified. ``check(done,
    total)`` is called before each image's items (one transaction per image); raising from it
    stops between two images, and a later run makes the rest.
    """
    rng = random.Random(seed)
    waiting = (
        Proposal.objects.filter(project=project, outcome=Outcome.PENDING)
        .exclude(Exists(ChallengeOption.objects.filter(pair=OuterRef("pair"))))
        .exclude(images_held_back(image="pair__image"))
        .order_by("pk")
        .values_list("pair__image_id", "pair_id", "source")
    )
    by_image: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for image_id, pair_id, source in waiting.iterator(chunk_size=5000):
        by_image[image_id][source].append(pair_id)
    if not by_image:
        return 0
    positives = verified_positives(project=project)
    created = 0
    for done, image_id in enumerate(sorted(by_image)):
        if check is not None:
            check(done, len(by_image))
        checks = positives.get(image_id)
        if not checks:
            continue
        for chunk in _chunks(_interleave(by_image[image_id], rng), PROPOSALS_PER_CHALLENGE):
            _challenge_create(
                project=project,
                image_id=image_id,
                check=rng.choice(checks),
                proposals=chunk,
                rng=rng,
            )
            created += 1
    return created


def _interleave(by_source: dict[str, list[int]], rng: random.Random) -> list[int]:
    """One of each source in turn, in a random source order."""
    queues = [list(pairs) for _, pairs in sorted(by_source.items())]
    for queue in queues:
        rng.shuffle(queue)
    out: list[int] = []
    while any(queues):
        rng.shuffle(queues)
        out.extend(queue.pop() for queue in queues if queue)
    return out


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@transaction.atomic
def _challenge_create(
    *, project: Project, image_id: int, check: int, proposals: list[int], rng: random.Random
) -> Task:
    task = Task.objects.create(
        project=project,
        kind=TaskKind.CHALLENGE,
        image_id=image_id,
        pair_id=check,
        target=project.judgments_per_item,
        random_key=rng.randrange(RANDOM_KEY_MAX),
    )
    members = [(check, True)] + [(pair_id, False) for pair_id in proposals]
    rng.shuffle(members)
    ChallengeOption.objects.bulk_create(
        ChallengeOption(task=task, pair_id=pair_id, position=position, is_check=is_check)
        for position, (pair_id, is_check) in enumerate(members)
    )
    return task
