"""What people decided about proposals: a verified negative, or a positive the model missed.

Recomputed from the item labels after every aggregation, so that an adjudication or a reopened
dispute moves the proposal (and its pair's kind) with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from annotate.models import ItemStatus
from datasets.models import Pair, PairKind, Project
from training.negatives.models import Outcome, Proposal, ProposalSource

NEGATIVE_KIND = {
    ProposalSource.RANDOM: PairKind.RANDOM_NEGATIVE,
    ProposalSource.MODEL: PairKind.HARD_NEGATIVE,
    ProposalSource.TEXT_EDIT: PairKind.TEXT_EDIT_NEGATIVE,
}


@dataclass(frozen=True)
class Decided:
    negatives: int
    positives: int
    changed: int


def outcome_of(*, adjudicated: int | None, status: str | None, label: int | None) -> Outcome:
    """A manager's adjudication first; else an agreed crowd label; else still pending."""
    final = adjudicated
    if final is None and status == ItemStatus.AGREED:
        final = label
    if final is None:
        return Outcome.PENDING
    return Outcome.POSITIVE if final == 1 else Outcome.NEGATIVE


def pair_kind_of(*, source: str, outcome: str) -> PairKind:
    return PairKind.POSITIVE if outcome == Outcome.POSITIVE else NEGATIVE_KIND[source]


@transaction.atomic
def proposals_decide(*, project: Project, now: datetime | None = None) -> Decided:
    """Bring every proposal's outcome and its pair's kind in line with its item label."""
    now = now or timezone.now()
    rows = Proposal.objects.filter(project=project).values_list(
        "pk",
        "source",
        "outcome",
        "pair_id",
        "pair__kind",
        "pair__item_label__adjudicated_label",
        "pair__item_label__status",
        "pair__item_label__label",
    )
    changed_proposals: list[Proposal] = []
    kinds: dict[str, list[int]] = {}
    counts = {Outcome.NEGATIVE: 0, Outcome.POSITIVE: 0, Outcome.PENDING: 0}
    for pk, source, outcome, pair_id, kind, adjudicated, status, label in rows.iterator(2000):
        new = outcome_of(adjudicated=adjudicated, status=status, label=label)
        counts[new] += 1
        if new != outcome:
            changed_proposals.append(
                Proposal(pk=pk, outcome=new, decided_at=None if new == Outcome.PENDING else now)
            )
        wanted = pair_kind_of(source=source, outcome=new)
        if kind != wanted:
            kinds.setdefault(wanted, []).append(pair_id)
    Proposal.objects.bulk_update(changed_proposals, ["outcome", "decided_at"], batch_size=500)

    for kind, pair_ids in kinds.items():
        for start in range(0, len(pair_ids), 500):
            Pair.objects.filter(pk__in=pair_ids[start : start + 500]).update(kind=kind)
    return Decided(
        negatives=counts[Outcome.NEGATIVE],
        positives=counts[Outcome.POSITIVE],
        changed=len(changed_proposals),
    )
