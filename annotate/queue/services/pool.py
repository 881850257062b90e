"""Filling the pool of tasks: what each image and pair of a project still needs from people."""

import random
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Subquery
from django.db.models.functions import Coalesce

from annotate.models import RANDOM_KEY_MAX, Answer, Lease, LeaseState, Task, TaskKind
from datasets.curation.services.cleaning import captions_held_back, images_held_back
from datasets.models import Caption, Image, Pair, Project, Source

_BATCH = 2000
GOLD_ANSWERS = (Answer.MATCH, Answer.NO_MATCH)
GOLD_BAD_ANSWER = "A gold answer is match or no_match."

# Later stages that judge some pairs another way (the hard-negative proposals, judged inside
# challenge items) hold them back from one-by-one verification through these: each callable
# takes the pair's OuterRef and returns an Exists to exclude on. Registered at app start
# (negatives' AppConfig), so the queue never imports a later stage.
_verify_exclusions: list[Callable[[OuterRef], Exists]] = []


def verify_exclusion_register(exclusion: Callable[[OuterRef], Exists]) -> None:
    """Hold back from verification tasks every pair for which ``exclusion(OuterRef("pk"))``
    exists. Idempotent: registering the same callable twice keeps one."""
    if exclusion not in _verify_exclusions:
        _verify_exclusions.append(exclusion)


@dataclass(frozen=True)
class PoolSummary:
    caption_tasks: int
    verify_tasks: int


def tasks_open(*, project: Project, seed: int | None = None) -> PoolSummary:
    """Create the missing tasks: a caption task for each image short of captions, a verification
    task for each pair without one. Safe to run again: existing tasks are left as they are.

    Duplicate images (non-canonical cluster members) and flagged images and captions get no new
    tasks, and flagged captions (repeats included) do not count toward an image's captions."""
    rng = random.Random(seed)
    captions = _caption_tasks_open(project=project, rng=rng)
    verifies = _verify_tasks_open(project=project, rng=rng)
    return PoolSummary(caption_tasks=captions, verify_tasks=verifies)


def verify_task_create(*, pair: Pair, author: AbstractBaseUser | None = None) -> Task:
    project = pair.image.project
    task, _ = Task.objects.get_or_create(
        pair=pair,
        kind=TaskKind.VERIFY,
        defaults={
            "project": project,
            "image_id": pair.image_id,
            "author": author,
            "target": project.judgments_per_item,
            "random_key": random.randrange(RANDOM_KEY_MAX),
        },
    )
    return task


@transaction.atomic
def gold_set(*, pair: Pair, answer: str) -> Task:
    """Make a pair a gold item with a known answer; its task leaves the normal pool."""
    if answer not in GOLD_ANSWERS:
        raise ValueError(GOLD_BAD_ANSWER)
    task = verify_task_create(pair=pair)
    Task.objects.filter(pk=task.pk).update(is_gold=True, gold_answer=answer, is_open=True)
    task.refresh_from_db()
    return task


@transaction.atomic
def gold_unset(*, pair: Pair) -> Task | None:
    """Make a gold pair an ordinary item again; returns its task, or None when it was not gold.

    The judgments given on it stay and count as votes from now on. Under the task's row lock,
    like every counter change in the queue: gold leases hold no slot, so the ones still out
    start holding one (their answers must count, and an expired one must give its slot back),
    and the target grows to what is already judged or leased (a gold item is answered by many;
    the task must not be over-assigned), so it reopens only if it is still short of its target.
    """
    task = (
        Task.objects.select_for_update()
        .filter(pair=pair, kind=TaskKind.VERIFY, is_gold=True)
        .first()
    )
    if task is None:
        return None
    out = Lease.objects.filter(task=task, state=LeaseState.ACTIVE, holds_slot=False)
    task.lease_count += out.update(holds_slot=True)
    task.is_gold = False
    task.gold_answer = ""
    task.target = max(task.target, task.judgment_count + task.lease_count)
    task.is_open = task.judgment_count + task.lease_count < task.target
    task.save(update_fields=["is_gold", "gold_answer", "lease_count", "target", "is_open"])
    return task


def _caption_tasks_open(*, project: Project, rng: random.Random) -> int:
    usable_captions = (
        Caption.objects.filter(image=OuterRef("pk"))
        .exclude(source=Source.TEXT_EDIT)
        .exclude(captions_held_back())
        .order_by()
        .values("image")
        .annotate(n=Count("pk"))
        .values("n")
    )
    needing = (
        Image.objects.filter(project=project)
        .exclude(Exists(Task.objects.filter(image=OuterRef("pk"), kind=TaskKind.CAPTION)))
        .exclude(images_held_back())
        .annotate(have=Coalesce(Subquery(usable_captions), 0))
        .filter(have__lt=project.captions_per_image)
        .values_list("pk", "have")
    )
    created = 0
    batch: list[Task] = []
    for image_id, have in needing.iterator(chunk_size=_BATCH):
        batch.append(
            Task(
                project=project,
                kind=TaskKind.CAPTION,
                image_id=image_id,
                target=project.captions_per_image - have,
                random_key=rng.randrange(RANDOM_KEY_MAX),
            )
        )
        if len(batch) >= _BATCH:
            created += _insert(batch)
            batch = []
    return created + _insert(batch)


def _verify_tasks_open(*, project: Project, rng: random.Random) -> int:
    needing = Pair.objects.filter(image__project=project).exclude(
        Exists(Task.objects.filter(pair=OuterRef("pk"), kind=TaskKind.VERIFY))
    )
    for exclusion in _verify_exclusions:
        needing = needing.exclude(exclusion(OuterRef("pk")))
    needing = (
        needing.exclude(images_held_back(image="image_id"))
        .exclude(captions_held_back(caption="caption_id"))
        .values_list("pk", "image_id", "caption__author_id")
    )
    created = 0
    batch: list[Task] = []
    for pair_id, image_id, author_id in needing.iterator(chunk_size=_BATCH):
        batch.append(
            Task(
                project=project,
                kind=TaskKind.VERIFY,
                image_id=image_id,
                pair_id=pair_id,
                author_id=author_id,
                target=project.judgments_per_item,
                random_key=rng.randrange(RANDOM_KEY_MAX),
            )
        )
        if len(batch) >= _BATCH:
            created += _insert(batch)
            batch = []
    return created + _insert(batch)


def _insert(batch: list[Task]) -> int:
    if not batch:
        return 0
    # ignore_conflicts: a concurrent run may have created some of these; the constraints decide,
    # and the count returned includes those.
    Task.objects.bulk_create(batch, ignore_conflicts=True)
    return len(batch)
