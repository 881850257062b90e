"""What the manager sees of hard negatives: per source, how many were proposed, judged,
confirmed and found to be positives; the model's scores of confirmed against rejected ones;
examples of each."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q, Sum

from annotate.models import ChallengeOption, Task, TaskKind
from datasets.models import Project
from training.negatives.models import Outcome, Proposal, ProposalSource


@dataclass(frozen=True)
class SourceRow:
    source: str
    label: str
    proposed: int
    in_challenges: int
    judged: int
    negatives: int
    positives: int

    @property
    def positive_share(self) -> float | None:
        """Share of judged proposals people found to describe the image (false negatives)."""
        return self.positives / self.judged if self.judged else None


@dataclass(frozen=True)
class Example:
    image_id: int
    caption: str
    score: float | None
    edit_type: str
    source: str


def source_rows(*, project: Project) -> list[SourceRow]:
    in_challenge = Exists(ChallengeOption.objects.filter(pair=OuterRef("pair")))
    counts = {
        row["source"]: row
        for row in Proposal.objects.filter(project=project)
        .values("source")
        .annotate(
            proposed=Count("pk"),
            in_challenges=Count("pk", filter=Q(in_challenge)),
            negatives=Count("pk", filter=Q(outcome=Outcome.NEGATIVE)),
            positives=Count("pk", filter=Q(outcome=Outcome.POSITIVE)),
        )
    }
    rows = []
    for source in ProposalSource:
        found = counts.get(source.value, {})
        negatives, positives = found.get("negatives", 0), found.get("positives", 0)
        rows.append(
            SourceRow(
                source=source.value,
                label=str(source.label),
                proposed=found.get("proposed", 0),
                in_challenges=found.get("in_challenges", 0),
                judged=negatives + positives,
                negatives=negatives,
                positives=positives,
            )
        )
    return rows


def scores_by_outcome(*, project: Project) -> dict[str, list[float]]:
    """Model scores of decided proposals (those that have one), by outcome."""
    scores: dict[str, list[float]] = {Outcome.NEGATIVE: [], Outcome.POSITIVE: []}
    rows = Proposal.objects.filter(
        project=project,
        score__isnull=False,
        outcome__in=[Outcome.NEGATIVE, Outcome.POSITIVE],
    ).values_list("outcome", "score")
    for outcome, score in rows.iterator(chunk_size=5000):
        scores[outcome].append(score)
    return scores


def examples(*, project: Project, outcome: Outcome, limit: int = 6) -> list[Example]:
    rows = (
        Proposal.objects.filter(project=project, outcome=outcome)
        .order_by("-decided_at", "-pk")
        .values_list("pair__image_id", "pair__caption__text", "score", "edit_type", "source")[
            :limit
        ]
    )
    return [Example(*row) for row in rows]


def challenge_counts(*, project: Project) -> dict[str, int]:
    tasks = Task.objects.filter(project=project, kind=TaskKind.CHALLENGE)
    return {
        "total": tasks.count(),
        "open": tasks.filter(is_open=True).count(),
        "answers": tasks.aggregate(n=Sum("judgment_count"))["n"] or 0,
    }
