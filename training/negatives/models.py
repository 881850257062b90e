"""Proposed negatives: pairs of an image with a caption that may not describe it, awaiting people.

A proposal is a :class:`~datasets.models.Pair` of kind random, hard or text-edit negative, plus
where it came from. People judge it inside challenge items; once its item label is settled the
outcome is recorded here and the pair's kind follows it: a proposal judged a match becomes a
positive (a false negative found), one judged no match stays a verified negative.
"""

from django.db import models
from django.db.models import Q

from datasets.models import Pair, Project
from training.registry.models import ModelVersion


class ProposalSource(models.TextChoices):
    RANDOM = "random", "Random"
    MODEL = "model", "Model-mined"
    TEXT_EDIT = "text_edit", "Text edit"


class Outcome(models.TextChoices):
    PENDING = "pending", "Waiting for judgments"
    NEGATIVE = "negative", "Confirmed negative"
    POSITIVE = "positive", "Found positive"


class Proposal(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="proposals")
    pair = models.OneToOneField(Pair, on_delete=models.CASCADE, related_name="proposal")
    source = models.CharField(max_length=10, choices=ProposalSource.choices)
    # The promoted model's score for the pair when it was proposed (model-mined ones), or the
    # score of the model current at the time, where one was available (for the manager's
    # distribution of confirmed against rejected proposals).
    score = models.FloatField(null=True, blank=True)
    rank = models.PositiveSmallIntegerField(null=True, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="proposals"
    )
    edit_type = models.CharField(max_length=24, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(source=ProposalSource.TEXT_EDIT, edit_type__gt="")
                | (~Q(source=ProposalSource.TEXT_EDIT) & Q(edit_type="")),
                name="negatives_edit_type_iff_text_edit",
            ),
            models.CheckConstraint(
                condition=~Q(source=ProposalSource.MODEL) | Q(score__isnull=False),
                name="negatives_mined_has_score",
            ),
            models.CheckConstraint(
                condition=Q(outcome=Outcome.PENDING) | Q(decided_at__isnull=False),
                name="negatives_outcome_dated",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "source", "outcome"], name="negatives_stats"),
            # The data browser's sort by model score walks this (datasets/browse/selectors.py).
            models.Index(fields=["score", "pair"], name="negatives_proposal_score"),
        ]

    def __str__(self) -> str:
        return f"{self.source} proposal {self.pk} ({self.outcome})"
