"""Turning a filtered selection of pairs into work: more judgments, gold (and back), adjudication,
releases.

Each action takes the ids the data browser's filter selected (datasets/browse/selectors.py) and
gives every pair one outcome: done, or skipped with the reason (counted per reason), in one
transaction. The existing services do the work where there is one (gold through
``annotate.queue.services.pool.gold_set`` and ``gold_unset``, verify tasks through
``verify_task_create``). Actions that change what the agreement figures are drawn from (gold
answers anchor Dawid–Skene and score the annotators) ask for a recompute through its scheduling.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F

from annotate.agreement.services.recomputes import recompute_request
from annotate.models import Answer, ItemLabel, ItemStatus, Task, TaskKind
from annotate.queue.services.pool import gold_set, gold_unset, verify_task_create
from config.db import atomic_retried
from datasets.models import Pair, PairLabel, Project

REQUEUE = "requeue"
GOLD = "gold"
UNGOLD = "ungold"
ADJUDICATE = "adjudicate"
EXCLUDE = "exclude"
INCLUDE = "include"
ACTIONS = {
    REQUEUE: "Ask for one more judgment",
    GOLD: "Make gold (with the current label)",
    UNGOLD: "Remove from gold",
    ADJUDICATE: "Send to a manager to adjudicate",
    EXCLUDE: "Exclude from releases",
    INCLUDE: "Include in releases again",
}
# One action touches at most this many pairs: a larger selection is narrowed first.
MAX_SELECTION = 10_000

SKIP_ADJUDICATED = "already adjudicated (final)"
SKIP_GOLD = "a gold item"
SKIP_NO_LABEL = "no label yet"
SKIP_ALREADY = "already so"
SKIP_NOT_GOLD = "not gold"
TOO_MANY = "{count} pairs or more match; an action takes at most {limit}. Narrow the filter."
UNKNOWN_ACTION = "Unknown action."
_ANSWER = {PairLabel.MATCH: Answer.MATCH, PairLabel.NO_MATCH: Answer.NO_MATCH}


@dataclass(frozen=True)
class ActionOutcome:
    """What one action did: pairs done, and pairs skipped by reason."""

    action: str
    done: int
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        parts = [f"{ACTIONS[self.action]}: {self.done} pair{'s' if self.done != 1 else ''} done"]
        parts += [f"{count} skipped ({reason})" for reason, count in sorted(self.skipped.items())]
        return "; ".join(parts) + "."


def selection_act(
    *, project: Project, pair_ids: Sequence[int], action: str, by: AbstractBaseUser
) -> ActionOutcome:
    """Apply ``action`` (one of ACTIONS) to the pairs ``pair_ids`` of ``project``.

    Ids of other projects are ignored (the caller selected them under this project's filter).
    Raises ValueError(UNKNOWN_ACTION) or ValueError(TOO_MANY) when over MAX_SELECTION.
    """
    if action not in ACTIONS:
        raise ValueError(UNKNOWN_ACTION)
    if len(pair_ids) > MAX_SELECTION:
        raise ValueError(TOO_MANY.format(count=len(pair_ids), limit=MAX_SELECTION))

    def act() -> ActionOutcome:
        pairs = list(
            Pair.objects.filter(image__project=project, pk__in=list(pair_ids))
            .select_related("image__project", "item_label")
            .order_by("pk")
        )
        skipped: Counter[str] = Counter()
        done = 0
        for pair in pairs:
            reason = _ACT[action](pair=pair, by=by)
            if reason:
                skipped[reason] += 1
            else:
                done += 1
        if done and action in _RECOMPUTE:
            recompute_request(project_id=project.pk)
        return ActionOutcome(action=action, done=done, skipped=dict(skipped))

    # All or nothing; a deadlock with a recompute writing the same item labels is run again.
    return atomic_retried(act)


# Actions after which the agreement figures are out of date: the gold answers changed.
_RECOMPUTE = {GOLD, UNGOLD}


def _adjudicated(pair: Pair) -> bool:
    item = getattr(pair, "item_label", None)
    return item is not None and item.adjudicated_label is not None


def _requeue(*, pair: Pair, by: AbstractBaseUser) -> str:
    if _adjudicated(pair):
        return SKIP_ADJUDICATED
    task = verify_task_create(pair=pair)
    task = Task.objects.select_for_update().get(pk=task.pk)
    if task.is_gold:
        return SKIP_GOLD
    # One more slot beyond what is judged or leased now; under the row lock, like every
    # counter change in annotate.queue.
    Task.objects.filter(pk=task.pk).update(
        target=F("judgment_count") + F("lease_count") + 1, is_open=True, priority=1
    )
    return ""


def _gold(*, pair: Pair, by: AbstractBaseUser) -> str:
    if pair.label is None:
        return SKIP_NO_LABEL
    existing = Task.objects.filter(pair=pair, kind=TaskKind.VERIFY, is_gold=True).first()
    if existing is not None and existing.gold_answer == _ANSWER[PairLabel(pair.label)]:
        return SKIP_ALREADY
    gold_set(pair=pair, answer=_ANSWER[PairLabel(pair.label)])
    # Gold is decided by its answer: a pending request for adjudication no longer stands.
    ItemLabel.objects.filter(pair=pair, sent_to_manager=True).update(
        sent_to_manager=False, needs_manager=False
    )
    return ""


def _ungold(*, pair: Pair, by: AbstractBaseUser) -> str:
    if gold_unset(pair=pair) is None:
        return SKIP_NOT_GOLD
    # The pair's label was the gold answer. Until the requested recompute runs it is what the
    # pair's item says (a manager's decision is final; an agreed label; else none), which is
    # also what that recompute leaves when the item's outcome does not change: it rewrites
    # only the pairs of items that did.
    item = getattr(pair, "item_label", None)
    if item is not None and item.adjudicated_label is not None:
        return ""
    if item is not None and item.status == ItemStatus.AGREED:
        label = (item.label, item.confidence)
    else:
        label = (None, None)
    Pair.objects.filter(pk=pair.pk).update(label=label[0], confidence=label[1])
    return ""


def _adjudicate(*, pair: Pair, by: AbstractBaseUser) -> str:
    if _adjudicated(pair):
        return SKIP_ADJUDICATED
    if Task.objects.filter(pair=pair, kind=TaskKind.VERIFY, is_gold=True).exists():
        return SKIP_GOLD  # decided by its gold answer
    verify_task_create(pair=pair)  # adjudication decides a verify item
    item, _ = ItemLabel.objects.get_or_create(project=pair.image.project, pair=pair)
    if item.sent_to_manager:
        return SKIP_ALREADY
    # The request is kept apart from needs_manager, which recomputes derive from the votes: the
    # next recompute keeps it (annotate.agreement.services.consensus).
    item.sent_to_manager = True
    item.needs_manager = True
    item.save(update_fields=["sent_to_manager", "needs_manager", "updated_at"])
    return ""


def _exclude(*, pair: Pair, by: AbstractBaseUser) -> str:
    return _excluded_set(pair, True)


def _include(*, pair: Pair, by: AbstractBaseUser) -> str:
    return _excluded_set(pair, False)


def _excluded_set(pair: Pair, excluded: bool) -> str:
    if pair.excluded_from_releases == excluded:
        return SKIP_ALREADY
    Pair.objects.filter(pk=pair.pk).update(excluded_from_releases=excluded)
    return ""


_ACT = {
    REQUEUE: _requeue,
    GOLD: _gold,
    UNGOLD: _ungold,
    ADJUDICATE: _adjudicate,
    EXCLUDE: _exclude,
    INCLUDE: _include,
}
