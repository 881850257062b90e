"""Consensus for a project: aggregated labels, disputes, adjudication and the agreement figures.

``consensus_recompute`` is the one place that reads a project's judgments and writes what
follows from them: every pair's aggregated label (Dawid–Skene, majority vote beside it), the
pair's final label, the annotator flags and an agreement snapshot. It is a pure function of the
judgments, the gold answers, the adjudications and the active suspensions, so running it twice
writes the same figures, and lifting a suspension restores exactly what was there before.

What counts as a vote: match / no match answers on verification tasks. Unsure answers and caption
tasks are no votes; suspended annotators' judgments stay in the database but count for nothing.
Gold items' judgments anchor Dawid–Skene and give the annotators' gold accuracy, but gold items
are not part of the agreement statistics (everyone answers them, which would weigh them heavily).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from annotate.agreement.aggregation import ANNOTATOR, ITEM, LABEL, dawid_skene, majority_vote
from annotate.agreement.annotators import SECONDS, annotator_flags, annotator_stats
from annotate.agreement.coefficients import (
    cohen_kappa_matrix,
    fleiss_kappa,
    krippendorff_alpha_interval,
    percent_agreement,
)
from annotate.agreement.signals import labels_recomputed
from annotate.models import (
    AgreementSnapshot,
    AnnotatorFlag,
    Answer,
    ChallengeMark,
    ChallengeOption,
    ItemLabel,
    ItemStatus,
    Judgment,
    Lease,
    Suspension,
    Task,
    TaskKind,
)
from annotate.queue.services.leases import refresh_open
from annotate.queue.services.pool import gold_set
from config.db import atomic_retried
from datasets.models import Membership, Pair, PairLabel, Project

VOTES = {Answer.MATCH: PairLabel.MATCH, Answer.NO_MATCH: PairLabel.NO_MATCH}
ANSWER_OF_LABEL = {PairLabel.MATCH: Answer.MATCH, PairLabel.NO_MATCH: Answer.NO_MATCH}

NOT_AN_ITEM = "Only pairs under verification in this project can be adjudicated."
BAD_LABEL = "An adjudication is match (1) or no match (0)."

# Bootstrap resamples for α's interval: the interval's ends move by well under 0.01 beyond this.
ALPHA_RESAMPLES = 1000
# Pairs of annotators need this many shared items for a Cohen's κ worth showing.
KAPPA_MIN_SHARED_ITEMS = 10
# The heat map shows the most active annotators only; beyond this it is unreadable anyway.
KAPPA_MAX_ANNOTATORS = 40
# Tasks per query when reading leases of many tasks.
_CHUNK = 500
# The status rule needs a threshold above one half, so that a tie is never agreed.
_MIN_THRESHOLD = 0.5 + 1e-9


@dataclass(frozen=True)
class RecomputeResult:
    snapshot: AgreementSnapshot
    reopened: int  # disputed items given one more judgment slot


def max_judgments(project: Project) -> int:
    """The most judgments an item gets before a manager decides (never below the target)."""
    return max(project.max_judgments_per_item, project.judgments_per_item)


def consensus_recompute(
    *,
    project: Project,
    now: datetime | None = None,
    full: bool = True,
    progress: Callable[..., object] | None = None,
) -> RecomputeResult:
    """Aggregate the project's judgments and write labels, flags and a snapshot; then give each
    disputed item that has all its judgments one more slot, up to the project's maximum.

    With ``full`` false only the items whose outcome changed (votes counted, label, status,
    majority label, waiting for a manager) are rewritten: a confidence that drifted because other
    items' votes moved the annotators' estimated reliabilities waits for a full recompute (the
    page's button). ``progress(phase=…, done=…, total=…)`` is called between write chunks.

    The reads run outside any write transaction and the writes go in chunks of
    CONCORD_AGREEMENT_CHUNK items, each its own transaction: on SQLite the one write lock is held
    for milliseconds at a time, never for the whole recompute. A run stopped between chunks
    leaves every item either as before or as computed, and no snapshot: the next run writes the
    rest.
    """
    now = now or timezone.now()
    state = _consensus_state(project=project)
    snapshot = _write(project=project, state=state, now=now, full=full, progress=progress)
    reopened = 0
    for task_id, seen in state.reopen:
        reopened += task_target_raise(task_id=task_id, seen_judgment_ids=seen, limit=state.limit)
    # Later stages act on the new labels (settled hard-negative proposals become verified
    # negatives or found positives) without this stage knowing them.
    labels_recomputed.send(sender=RecomputeResult, project=project, now=now)
    return RecomputeResult(snapshot=snapshot, reopened=reopened)


def one_vote_each(rows: pd.DataFrame) -> pd.DataFrame:
    """The judgment rows with one vote per (item, annotator): the aggregators count each
    annotator once per item, and the product can give an annotator several judgments on one
    pair, so the choice is made here, for every case, and never left to fail downstream.

    How a second judgment arises: a known positive met as a challenge's check and on its own
    verify task (or in two challenges); a proposal judged in a challenge that then gets a verify
    task (made gold, "one more judgment", sent to adjudication) which the same annotator answers
    (the queue now avoids handing that out, but earlier answers stay); a gold item answered and
    then removed from gold, its answers becoming ordinary votes.

    The rule, among the match / no match answers (unsure ones are no votes and stay as they are):
    1. a vote on an ordinary item beats a check's or a current gold item's answer (a check never
       displaces a real vote; a gold answer is scored, not counted);
    2. then an answer given as ordinary work beats one given while the task was gold: that one
       (it counts as an ordinary vote after "Remove from gold") counts only if the annotator gave
       no other;
    3. then the earliest: the vote the annotator gave first as work is the one earlier
       recomputes counted, so a later repeat never moves figures already shown.
    Expects the columns id, item, annotator, answer, is_gold and on_gold; returns the kept rows
    in id order.
    """
    is_vote = rows["answer"].isin(list(VOTES))
    ordered = rows.sort_values(["is_gold", "on_gold", "id"], kind="stable")
    # Among the votes alone, so that an unsure answer never hides a vote.
    votes_ordered = ordered.loc[is_vote.loc[ordered.index]]
    repeated = pd.Series(False, index=ordered.index)
    repeated.loc[votes_ordered.index] = votes_ordered.duplicated([ITEM, ANNOTATOR]).to_numpy()
    # .loc with a boolean mask: on an empty frame, [] would read an empty mask as column names.
    return (
        ordered.loc[~repeated.astype(bool)].sort_values("id", kind="stable").reset_index(drop=True)
    )


def _challenge_rows(*, project: Project) -> list[tuple]:
    """Each caption of an answered challenge as a judgment on its pair: marked is a match,
    unmarked no match; the answer's time is shared among its captions."""
    marks = (
        ChallengeMark.objects.filter(judgment__task__project=project)
        .annotate(options=Count("judgment__marks"))
        .order_by("judgment_id", "option_id")
        .values_list(
            "judgment_id",
            "judgment__task_id",
            "option__pair_id",
            "judgment__annotator_id",
            "marked",
            "judgment__seconds",
            "option__is_check",
            "options",
        )
    )
    return [
        (
            judgment_id,
            task_id,
            pair_id,
            annotator_id,
            Answer.MATCH if marked else Answer.NO_MATCH,
            seconds / max(1, options),
            is_check,
        )
        for judgment_id, task_id, pair_id, annotator_id, marked, seconds, is_check, options in marks
    ]


def task_target_raise(*, task_id: int, seen_judgment_ids: Collection[int], limit: int) -> int:
    """Ask for one more judgment on a task whose item the caller found unsettled; returns 1 when
    it did, else 0.

    Only when, under the task's row lock, all its judgments are in (as many as its target, no
    lease outstanding) and they are exactly ``seen_judgment_ids``, the judgments the caller's
    verdict was drawn from, and the target is below ``limit``. A recompute reads judgments and
    tasks in separate statements while annotators take and answer tasks, so without the check
    a lease taken or an answer given after its read would be asked for again by a stale verdict.
    The counters change only under the task row lock, as everywhere in annotate.queue.
    """
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id, is_gold=False).first()
        if task is None or task.lease_count or task.judgment_count < task.target:
            return 0
        if task.target >= limit:
            return 0
        judged = set(Judgment.objects.filter(task_id=task_id).values_list("id", flat=True))
        if judged != set(seen_judgment_ids):
            return 0
        task.target += 1
        refresh_open(task)
        task.save(update_fields=["target", "is_open"])
    return 1


@transaction.atomic
def item_adjudicate(
    *,
    project: Project,
    pair: Pair,
    label: int,
    by: AbstractBaseUser,
    make_gold: bool = False,
    now: datetime | None = None,
) -> ItemLabel:
    """A manager's final label for a pair: later recomputes keep it. The pair's task stops taking
    judgments; with ``make_gold`` the pair becomes a gold item with this answer."""
    if label not in (PairLabel.MATCH, PairLabel.NO_MATCH):
        raise ValueError(BAD_LABEL)
    task = (
        Task.objects.select_for_update()
        .filter(project=project, pair=pair, kind=TaskKind.VERIFY)
        .first()
    )
    # A proposal judged only through a challenge item is an item too; its challenge's task
    # stays open for the other captions it shows, and the decision settles this pair alone.
    in_challenge = ChallengeOption.objects.filter(
        task__project=project, pair=pair, is_check=False
    ).exists()
    if task is None and not in_challenge:
        raise ValueError(NOT_AN_ITEM)
    now = now or timezone.now()
    if task is not None and not task.is_gold:
        # Close it: whatever is leased may still come in, nothing more is handed out.
        task.target = max(task.judgment_count + task.lease_count, 1)
        refresh_open(task)
        task.save(update_fields=["target", "is_open"])
    item, _ = ItemLabel.objects.get_or_create(project=project, pair=pair)
    item.adjudicated_label = label
    item.adjudicated_by = by
    item.adjudicated_at = now
    item.needs_manager = False
    item.save()
    Pair.objects.filter(pk=pair.pk).update(label=label, confidence=1.0)
    if make_gold:
        gold_set(pair=pair, answer=ANSWER_OF_LABEL[label])
    return item


def suspended_annotator_ids(*, project: Project) -> set[int]:
    return set(
        Suspension.objects.filter(project=project, lifted_at__isnull=True).values_list(
            "annotator_id", flat=True
        )
    )


def snapshot_latest(*, project: Project) -> AgreementSnapshot | None:
    return AgreementSnapshot.objects.filter(project=project).order_by("-computed_at", "-id").first()


def projects_needing_recompute() -> list[int]:
    """Projects with judgments newer than their latest snapshot (what the periodic task does)."""
    latest_judgment = (
        Judgment.objects.values("task__project_id")
        .annotate(last=Max("id"))
        .values_list("task__project_id", "last")
    )
    latest_snapshot = dict(
        AgreementSnapshot.objects.values("project_id")
        .annotate(last=Max("last_judgment_id"))
        .values_list("project_id", "last")
    )
    return sorted(
        project_id
        for project_id, last in latest_judgment
        if last > (latest_snapshot.get(project_id) or 0)
    )


# --- reading ---------------------------------------------------------------------------------


@dataclass
class _State:
    items: pd.DataFrame  # one row per non-gold verify pair, see _consensus_state
    gold: dict[int, int]
    adjudicated: dict[int, int]
    votes: pd.DataFrame  # counted votes on non-gold items: item, annotator, label, seconds
    stats: pd.DataFrame
    flags: dict[Hashable, list]
    suspended_rows: list[dict]
    answers: dict[int, dict[str, int]]
    last_judgment_id: int
    target: int
    limit: int
    reopen: list[tuple[int, tuple[int, ...]]]  # task, the judgment ids read on it


def _consensus_state(*, project: Project) -> _State:
    target = project.judgments_per_item
    threshold = min(1.0, max(project.agreement_threshold, _MIN_THRESHOLD))
    limit = max_judgments(project)
    suspended = suspended_annotator_ids(project=project)

    verify = (
        Judgment.objects.filter(task__project=project, task__kind=TaskKind.VERIFY)
        .order_by("id")
        .values_list(
            "id",
            "task_id",
            "task__pair_id",
            "annotator_id",
            "answer",
            "seconds",
            "task__is_gold",
            "gold_correct",  # set only on an answer given while its task was gold
        )
    )
    rows = pd.DataFrame.from_records(
        [(*row[:-1], row[-1] is not None) for row in verify]
        + [(*row, False) for row in _challenge_rows(project=project)],
        columns=["id", "task", ITEM, ANNOTATOR, "answer", SECONDS, "is_gold", "on_gold"],
    )
    # Every judgment read on each task (unsure, suspended and repeated ones too): what the
    # verdicts below are drawn from, checked again before a target goes up.
    judged = rows.groupby("task")["id"].unique() if len(rows) else pd.Series(dtype=object)
    answers: dict[int, dict[str, int]] = {}
    for (annotator, answer), count in rows.groupby([ANNOTATOR, "answer"]).size().items():
        answers.setdefault(int(annotator), {})[answer] = int(count)

    gold = {
        pair_id: VOTES[answer]
        for pair_id, answer in Task.objects.filter(
            project=project, kind=TaskKind.VERIFY, is_gold=True
        ).values_list("pair_id", "gold_answer")
        if answer in VOTES
    }
    # A challenge's known positive is an attention check: scored like gold.
    for pair_id in ChallengeOption.objects.filter(task__project=project, is_check=True).values_list(
        "pair_id", flat=True
    ):
        gold.setdefault(pair_id, VOTES[Answer.MATCH])
    adjudicated = dict(
        ItemLabel.objects.filter(project=project, adjudicated_label__isnull=False).values_list(
            "pair_id", "adjudicated_label"
        )
    )

    # Items somebody answered (unsure and suspended answers too), not counting a check's or a
    # gold item's: an item nobody answered stays unjudged (no item row; see _write).
    answered = set(rows.loc[~rows["is_gold"].astype(bool), ITEM]) if len(rows) else set()
    rows = one_vote_each(rows)
    is_vote = rows["answer"].isin(list(VOTES))
    counted = rows[is_vote & ~rows[ANNOTATOR].isin(suspended)].copy()
    counted[LABEL] = counted["answer"].map(VOTES).astype(np.int64)
    votes = counted.loc[~counted["is_gold"].astype(bool)]

    tasks = pd.DataFrame.from_records(
        list(
            Task.objects.filter(project=project, kind=TaskKind.VERIFY, is_gold=False).values_list(
                "pk", "pair_id", "target"
            )
        )
        # A challenge's proposals share its task's slots: each is an item of its own.
        + list(
            ChallengeOption.objects.filter(task__project=project, is_check=False).values_list(
                "task_id", "pair_id", "task__target"
            )
        ),
        columns=["task", ITEM, "task_target"],
    ).set_index(ITEM)
    # A proposal judged in a challenge can also get a verify task of its own (made gold and
    # back, sent for one more judgment or to adjudication): one item per pair all the same, its
    # verify task (listed first) the one that asks for more judgments and is checked for them.
    tasks = tasks.loc[~tasks.index.duplicated(keep="first")]

    known = {**gold, **adjudicated}  # an adjudication is final, over a gold answer too
    if len(counted):
        ds = dawid_skene(
            judgments=counted[[ITEM, ANNOTATOR, LABEL]],
            target_judgments=target,
            agreement_threshold=threshold,
            gold=known,
        )
        ds_items = ds.items
        stats = annotator_stats(
            judgments=counted[[ITEM, ANNOTATOR, LABEL, SECONDS]], gold=gold, dawid_skene=ds
        )
        flags = annotator_flags(stats=stats)
    else:
        ds_items = pd.DataFrame(columns=["label", "confidence", "judgments", "status"])
        stats, flags = pd.DataFrame(), {}
    if len(votes):
        mv_items = majority_vote(
            judgments=votes[[ITEM, ANNOTATOR, LABEL]],
            target_judgments=target,
            agreement_threshold=threshold,
        )
    else:
        mv_items = pd.DataFrame(columns=["label", "confidence"])

    items = tasks.join(ds_items, how="left").join(
        mv_items[["label", "confidence"]].rename(
            columns={"label": "mv_label", "confidence": "mv_share"}
        ),
        how="left",
    )
    items["status"] = items["status"].fillna(ItemStatus.PENDING)
    # An item's votes are its counted votes on ordinary work: Dawid–Skene also reads the answers
    # given to a known positive as a challenge's check (they anchor the annotators' reliability),
    # which are no votes; counting them said "2 votes" beside no answer listed and could agree
    # an item short of its target.
    per_item = votes.groupby(ITEM).size() if len(votes) else pd.Series(dtype=np.int64)
    items["judgments"] = items.index.map(per_item).fillna(0).astype(int)
    short = items["status"].isin([ItemStatus.AGREED, ItemStatus.DISPUTED]) & (
        items["judgments"] < target
    )
    items.loc[short, "status"] = ItemStatus.PENDING
    items["answered"] = items.index.isin(list(answered))
    items["adjudicated"] = items.index.isin(list(adjudicated))
    items["judged"] = items["task"].map(judged.map(len)).fillna(0).astype(int)
    # Only an item whose judgments are all in (as read with the votes) has a verdict: one with a
    # lease outstanding may yet be settled by its answer.
    complete = items["judged"] >= items["task_target"]
    # An item that can get no more judgments and whose Dawid–Skene label goes against the plain
    # majority is not agreed: with few items the model can come to trust one annotator entirely
    # (one adjudication as its only anchor) and outvote the others "at 100 %". A manager decides.
    against_majority = (
        complete
        & (items["task_target"] >= limit)
        & (items["status"] == ItemStatus.AGREED)
        & items["mv_label"].notna()
        & (items["label"] != items["mv_label"])
    )
    items.loc[against_majority, "status"] = ItemStatus.DISPUTED
    unsettled = ~items["adjudicated"] & items["status"].isin(
        [ItemStatus.DISPUTED, ItemStatus.PENDING]
    )
    # A pending item with all its judgments in got unsure answers or lost suspended votes: it
    # needs more judgments just as a disputed one does.
    items["reopen"] = unsettled & complete & (items["task_target"] < limit)
    # An unsettled item still asking for judgments that no member may give (everyone allowed has
    # had it, or wrote it) would wait for ever: a manager decides it, like one at the maximum.
    asking = unsettled & ~complete & (items["judged"] > 0)
    nobody_left = _tasks_nobody_can_take(
        project=project, task_ids={int(t) for t in items.loc[asking, "task"]}, suspended=suspended
    )
    # A manager's request for adjudication (the data browser's "send to adjudication") stands
    # until the item is adjudicated, whatever the votes say since.
    # A gold pair is decided by its answer: a request for adjudication no longer stands.
    sent = set(
        ItemLabel.objects.filter(
            project=project, sent_to_manager=True, adjudicated_label__isnull=True
        ).values_list("pair_id", flat=True)
    ) - set(gold)
    items["needs_manager"] = (
        unsettled
        & (
            (complete & (items["task_target"] >= limit))
            | (asking & items["task"].isin(list(nobody_left)))
        )
    ) | (~items["adjudicated"] & items.index.isin(list(sent)))

    suspended_rows = []
    if suspended:
        everyone = rows[is_vote].copy()
        everyone[LABEL] = everyone["answer"].map(VOTES).astype(np.int64)
        full = annotator_stats(judgments=everyone[[ITEM, ANNOTATOR, LABEL, SECONDS]], gold=gold)
        suspended_rows = [
            _annotator_row(annotator=annotator, row=row, flags=[], answers=answers)
            for annotator, row in full.iterrows()
            if annotator in suspended
        ]
    return _State(
        items=items,
        gold=gold,
        adjudicated=adjudicated,
        votes=votes,
        stats=stats,
        flags=flags,
        suspended_rows=suspended_rows,
        answers=answers,
        last_judgment_id=int(rows["id"].max()) if len(rows) else 0,
        target=target,
        limit=limit,
        # One row per task: a challenge with several unsettled proposals asks for one more.
        reopen=sorted(
            (task, tuple(sorted(int(i) for i in judged.get(task, []))))
            for task in {int(task) for task in items.loc[items["reopen"], "task"]}
        ),
    )


def _tasks_nobody_can_take(
    *, project: Project, task_ids: set[int], suspended: set[int]
) -> set[int]:
    """Of these tasks, those no project member may still be handed: each annotator gets a task
    once (skipped or expired included), never the author's, nor a verify task on a pair they
    judged in a challenge, and suspended ones get nothing."""
    if not task_ids:
        return set()
    members = set(Membership.objects.filter(project=project).values_list("user_id", flat=True))
    members -= suspended
    had: dict[int, set[int]] = {task_id: set() for task_id in task_ids}
    ordered = sorted(task_ids)
    # In chunks: SQLite bounds the parameters of one statement, and a large project mid-way
    # has many items still asking.
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        for task_id, annotator_id in Lease.objects.filter(task_id__in=chunk).values_list(
            "task_id", "annotator_id"
        ):
            had[task_id].add(annotator_id)
        for task_id, author_id in Task.objects.filter(
            pk__in=chunk, author__isnull=False
        ).values_list("pk", "author_id"):
            had[task_id].add(author_id)
        # Nor a verify task on a pair the annotator judged in a challenge (the queue's rule).
        task_of_pair = dict(
            Task.objects.filter(pk__in=chunk, kind=TaskKind.VERIFY).values_list("pair_id", "pk")
        )
        for pair_id, annotator_id in ChallengeMark.objects.filter(
            option__pair_id__in=list(task_of_pair)
        ).values_list("option__pair_id", "judgment__annotator_id"):
            had[task_of_pair[pair_id]].add(annotator_id)
    return {task_id for task_id, seen in had.items() if not members - seen}


# --- writing ---------------------------------------------------------------------------------


# What an item's outcome is: a change in any of these rewrites it. Confidences alone drift with
# every recompute (Dawid–Skene re-estimates every annotator), so they are rewritten only with
# their item's outcome or by a full recompute.
_OUTCOME = ["label", "mv_label", "judgments", "status", "needs_manager"]
_DRIFT = ["confidence", "mv_share"]


def _chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _write(
    *,
    project: Project,
    state: _State,
    now: datetime,
    full: bool = True,
    progress: Callable[..., object] | None = None,
) -> AgreementSnapshot:
    items = state.items
    existing = {label.pair_id: label for label in ItemLabel.objects.filter(project=project)}
    fields = [*_OUTCOME, *_DRIFT]
    to_save = []
    final: dict[int, tuple[int | None, float | None]] = {}
    unjudged: list[int] = []  # rows of items nobody answered, written by older recomputes
    for row in items.itertuples():
        pair_id = int(row.Index)
        item = existing.get(pair_id)
        if not row.answered and (item is None or not (item.is_adjudicated or item.sent_to_manager)):
            # Nobody answered it: it stays unjudged (no item row, as the data browser's
            # status=unjudged reads it), and it is on no list of the Disputed page.
            if item is not None:
                unjudged.append(item.pk)
            final[pair_id] = (None, None)
            continue
        item = item or ItemLabel(project=project, pair_id=pair_id)
        after = {
            "label": _int_or_none(row.label),
            "confidence": _float_or_none(row.confidence),
            "mv_label": _int_or_none(row.mv_label),
            "mv_share": _float_or_none(row.mv_share),
            "judgments": int(row.judgments),
            "status": row.status,
            "needs_manager": bool(row.needs_manager),
        }
        changed = {field for field in fields if getattr(item, field) != after[field]}
        # Only items whose outcome changed are written (all that changed with ``full``): most
        # items of a large project are untouched between two recomputes, and rewriting every
        # drifted confidence was most of a recompute's time at 100,000 items.
        if item.pk is None or changed & set(_OUTCOME) or (full and changed):
            for field, value in after.items():
                setattr(item, field, value)
            item.updated_at = now
            to_save.append(item)
        if item.is_adjudicated:
            final[pair_id] = (item.adjudicated_label, 1.0)
        elif item.status == ItemStatus.AGREED:
            final[pair_id] = (item.label, item.confidence)
        else:
            final[pair_id] = (None, None)
    chunk = settings.CONCORD_AGREEMENT_CHUNK
    # Each chunk is its own transaction, run again when it deadlocks with a manager's bulk
    # action on the same rows (config.db.atomic_retried).
    for batch in _chunks(unjudged, chunk):
        # Re-checked in the statement: a manager may have decided or sent it meanwhile.
        atomic_retried(
            lambda batch=batch: ItemLabel.objects.filter(
                pk__in=batch, adjudicated_label__isnull=True, sent_to_manager=False
            ).delete()
        )
    for done, batch in enumerate(_chunks(to_save, chunk)):

        def save(batch=batch) -> None:
            ItemLabel.objects.bulk_update(
                [i for i in batch if i.pk], [*fields, "updated_at"], batch_size=chunk
            )
            ItemLabel.objects.bulk_create([i for i in batch if not i.pk], batch_size=chunk)

        atomic_retried(save)
        if progress is not None:
            progress(phase="items", done=min((done + 1) * chunk, len(to_save)), total=len(to_save))
    # Gold pairs have no item row of their own in the state (their answer decides them): a
    # request for a manager made before they became gold no longer stands.
    gold_waiting = ItemLabel.objects.filter(
        project=project, pair_id__in=list(state.gold), needs_manager=True
    )
    if gold_waiting.exists():
        with transaction.atomic():
            gold_waiting.update(needs_manager=False, sent_to_manager=False)
    for pair_id, answer in state.gold.items():
        # A manager's adjudication is final, over a gold answer too (the release reads it so).
        if pair_id not in state.adjudicated:
            final[pair_id] = (answer, 1.0)
    # A pair's label follows its item: only written items' pairs (and gold) can have moved,
    # unless this is a full recompute.
    written = [*(i.pair_id for i in to_save), *state.gold] if not full else list(final)
    _pair_labels_write(final={pair_id: final[pair_id] for pair_id in written}, progress=progress)

    with transaction.atomic():
        AnnotatorFlag.objects.filter(project=project).delete()
        AnnotatorFlag.objects.bulk_create(
            AnnotatorFlag(
                project=project,
                annotator_id=annotator,
                code=flag.code,
                reason=flag.reason[:300],
                computed_at=now,
            )
            for annotator, found in state.flags.items()
            for flag in found
        )
        snapshot = _snapshot_create(project=project, state=state, final=final, now=now)
    if progress is not None:
        progress(phase="done", written=len(to_save), items=len(items))
    return snapshot


def _pair_labels_write(
    *,
    final: dict[int, tuple[int | None, float | None]],
    progress: Callable[..., object] | None = None,
) -> None:
    chunk = settings.CONCORD_AGREEMENT_CHUNK
    ids = sorted(final)
    for done, batch in enumerate(_chunks(ids, chunk)):
        with transaction.atomic():
            changed = []
            for pair in Pair.objects.filter(pk__in=batch).only("pk", "label", "confidence"):
                label, confidence = final[pair.pk]
                if (pair.label, pair.confidence) != (label, confidence):
                    pair.label, pair.confidence = label, confidence
                    changed.append(pair)
            Pair.objects.bulk_update(changed, ["label", "confidence"], batch_size=chunk)
        if progress is not None:
            progress(phase="pairs", done=min((done + 1) * chunk, len(ids)), total=len(ids))


def _snapshot_create(
    *, project: Project, state: _State, final: dict, now: datetime
) -> AgreementSnapshot:
    items, votes = state.items, state.votes
    frame = votes[[ITEM, ANNOTATOR, LABEL]]
    if len(frame):
        alpha = krippendorff_alpha_interval(judgments=frame, resamples=ALPHA_RESAMPLES, seed=0)
        fleiss = (
            fleiss_kappa(judgments=frame, ratings_per_item=state.target)
            if state.target >= 2
            else None
        )
        agreement = percent_agreement(judgments=frame)
    else:
        alpha, fleiss, agreement = None, None, math.nan
    settled = ~items["adjudicated"]
    labels = [final[int(pair_id)][0] for pair_id in items.index]
    names = dict(
        get_user_model()
        .objects.filter(
            pk__in=[int(a) for a in state.stats.index] + [r["id"] for r in state.suspended_rows]
        )
        .values_list("pk", "username")
    )
    rows = [
        _annotator_row(
            annotator=annotator,
            row=row,
            flags=state.flags.get(annotator, []),
            answers=state.answers,
        )
        for annotator, row in state.stats.iterrows()
    ] + state.suspended_rows
    for row in rows:
        row["name"] = names.get(row["id"], str(row["id"]))
    with_votes = items[items["judgments"] > 0]
    return AgreementSnapshot.objects.create(
        project=project,
        computed_at=now,
        last_judgment_id=state.last_judgment_id,
        judgments=len(votes),
        annotators=int(votes[ANNOTATOR].nunique()) if len(votes) else 0,
        alpha=_float_or_none(alpha.alpha) if alpha else None,
        alpha_low=_float_or_none(alpha.low) if alpha else None,
        alpha_high=_float_or_none(alpha.high) if alpha else None,
        fleiss_kappa=_float_or_none(fleiss.kappa) if fleiss else None,
        fleiss_items=fleiss.items if fleiss else 0,
        percent_agreement=_float_or_none(agreement),
        items_total=len(items),
        # Items nobody answered are in items_total alone (the page shows them as not answered).
        items_pending=int(
            (
                settled
                & items["answered"]
                & (items["status"] == ItemStatus.PENDING)
                & ~items["needs_manager"]
            ).sum()
        ),
        items_agreed=int(
            (settled & (items["status"] == ItemStatus.AGREED) & ~items["needs_manager"]).sum()
        ),
        items_disputed=int(
            (settled & (items["status"] == ItemStatus.DISPUTED) & ~items["needs_manager"]).sum()
        ),
        items_waiting=int(items["needs_manager"].sum()),
        items_adjudicated=int(items["adjudicated"].sum()),
        labels_match=sum(label == PairLabel.MATCH for label in labels),
        labels_no_match=sum(label == PairLabel.NO_MATCH for label in labels),
        mv_ds_disagreements=int((with_votes["label"] != with_votes["mv_label"]).sum()),
        kappa_matrix=_kappa_json(votes=frame, names=names),
        annotator_rows=rows,
    )


def _kappa_json(*, votes: pd.DataFrame, names: dict[int, str]) -> dict:
    if votes.empty:
        return {"annotators": [], "names": [], "kappa": []}
    busiest = votes[ANNOTATOR].value_counts().index[:KAPPA_MAX_ANNOTATORS]
    matrix = cohen_kappa_matrix(
        judgments=votes[votes[ANNOTATOR].isin(busiest)], min_shared_items=KAPPA_MIN_SHARED_ITEMS
    ).kappa
    ids = [int(a) for a in matrix.index]
    return {
        "annotators": ids,
        "names": [names.get(a, str(a)) for a in ids],
        "kappa": [[_float_or_none(v) for v in row] for row in matrix.to_numpy()],
    }


def _annotator_row(
    *, annotator: Hashable, row: pd.Series, flags: list, answers: dict[int, dict[str, int]]
) -> dict:
    accuracy = _float_or_none(row.get("gold_accuracy"))
    consensus = _float_or_none(row.get("consensus_agreement"))
    return {
        "id": int(annotator),
        "items_done": int(row["items_done"]),
        "gold_items": int(row["gold_items"]),
        "gold_accuracy": accuracy,
        "consensus_agreement": consensus,
        "ds_accuracy": _float_or_none(row.get("ds_accuracy")),
        "median_seconds": _float_or_none(row.get("median_seconds")),
        "answers": {
            answer: answers.get(int(annotator), {}).get(answer, 0)
            for answer in (Answer.MATCH, Answer.NO_MATCH, Answer.UNSURE)
        },
        "flags": [{"code": flag.code, "reason": flag.reason} for flag in flags],
    }


def _float_or_none(value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else round(number, 6)


def _int_or_none(value) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return None
    return int(value)
