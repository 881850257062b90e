"""Losses as modules returning named terms; :class:`MatchingLoss` weighs and sums them.

Batch convention for the ranking losses: row ``i`` of a [B, B] matrix is image ``i``, column ``j``
is text ``j``, and ``(i, i)`` is a positive pair. ``same[i, j]`` marks other columns that also match
image ``i`` (another caption of the same image in the batch): those are neither positives nor
negatives and are left out, rather than being pushed apart as if they did not match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.core.config import TrainConfig


def _off_diagonal(same: torch.Tensor | None, size: int, device: torch.device) -> torch.Tensor:
    eye = torch.eye(size, dtype=torch.bool, device=device)
    if same is None:
        return torch.zeros_like(eye)
    return same & ~eye


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE (CLIP): cross-entropy of each image over the texts and vice versa."""

    def forward(
        self, logits: torch.Tensor, same: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        ignore = _off_diagonal(same, logits.shape[0], logits.device)
        logits = logits.masked_fill(ignore, float("-inf"))
        targets = torch.arange(logits.shape[0], device=logits.device)
        i2t = F.cross_entropy(logits, targets)
        t2i = F.cross_entropy(logits.T, targets)
        return {"infonce": (i2t + t2i) / 2, "infonce_i2t": i2t, "infonce_t2i": t2i}


class TripletLoss(nn.Module):
    """Margin ranking loss in both directions (VSE, VSE++).

    For anchor image ``i`` and negative text ``j``: ``max(0, margin - s_ii + s_ij)``; for anchor
    text ``j`` and negative image ``i``: ``max(0, margin - s_jj + s_ij)``. Summed over the batch's
    negatives, or only the hardest one (``hardest=True``, VSE++); averaged over anchors, and the two
    directions added.
    """

    def __init__(self, margin: float = 0.2, hardest: bool = True) -> None:
        super().__init__()
        self.margin = margin
        self.hardest = hardest

    def forward(
        self, scores: torch.Tensor, same: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        size = scores.shape[0]
        diagonal = scores.diag()
        not_negative = torch.eye(size, dtype=torch.bool, device=scores.device)
        not_negative |= _off_diagonal(same, size, scores.device)
        cost_text = (self.margin + scores - diagonal[:, None]).clamp(min=0)
        cost_image = (self.margin + scores - diagonal[None, :]).clamp(min=0)
        cost_text = cost_text.masked_fill(not_negative, 0.0)
        cost_image = cost_image.masked_fill(not_negative, 0.0)
        if self.hardest:
            i2t, t2i = cost_text.max(dim=1).values, cost_image.max(dim=0).values
        else:
            i2t, t2i = cost_text.sum(dim=1), cost_image.sum(dim=0)
        return {
            "triplet": i2t.mean() + t2i.mean(),
            "triplet_i2t": i2t.mean(),
            "triplet_t2i": t2i.mean(),
        }


class LabelledTripletLoss(nn.Module):
    """Margin ranking of labelled negatives against their image's positive caption:
    ``max(0, margin - s(i, positive) + s(i, negative))``, weighted by each label's confidence.

    In-batch triplets only see other images' captions, which are mostly easy; this is where
    human-verified hard negatives (a caption close to the image that people said does not
    describe it) push the model apart where it was wrong.
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def forward(
        self,
        positive_scores: torch.Tensor,
        negative_scores: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        costs = (self.margin - positive_scores + negative_scores).clamp(min=0)
        return {"triplet_labelled": _weighted_mean(costs, weights)}


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    return (values * weights).sum() / weights.sum().clamp(min=1e-12)


class BCELoss(nn.Module):
    """Binary cross-entropy on labelled pairs' match logits (label 1 = match)."""

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        losses = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
        return {"bce": _weighted_mean(losses, weights)}


class HingeLoss(nn.Module):
    """Binary hinge on labelled pairs: ``max(0, margin - y z)`` with ``y`` in {-1, +1}."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        signs = labels.float() * 2 - 1
        losses = (self.margin - signs * logits).clamp(min=0)
        return {"hinge": _weighted_mean(losses, weights)}


class MatchingLoss(nn.Module):
    """The weighted sum of the configured terms; terms with weight 0 are not computed.

    Returns ``loss`` (what is minimised) and every computed term, unweighted, for the log.
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.weights = {
            "infonce": config.w_infonce,
            "triplet": config.w_triplet,
            "bce": config.w_bce,
            "hinge": config.w_hinge,
        }
        self.infonce = InfoNCELoss()
        self.triplet = TripletLoss(config.triplet_margin, config.triplet_hardest)
        self.labelled_triplet = LabelledTripletLoss(config.triplet_margin)
        self.bce = BCELoss()
        self.hinge = HingeLoss(config.hinge_margin)

    @property
    def needs_labelled_pairs(self) -> bool:
        return self.weights["bce"] > 0 or self.weights["hinge"] > 0

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        same: torch.Tensor | None = None,
        pair_logits: torch.Tensor | None = None,
        pair_labels: torch.Tensor | None = None,
        pair_weights: torch.Tensor | None = None,
        negative_scores: torch.Tensor | None = None,
        negative_positive_scores: torch.Tensor | None = None,
        negative_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``outputs`` is the model's forward on a batch of positive pairs; ``pair_*`` describe
        a batch of labelled pairs and are needed only when a binary term is on;
        ``negative_scores`` are the scores of labelled negatives and
        ``negative_positive_scores`` those of a positive caption of the same image, which the
        triplet term then also ranks (added to the in-batch triplet)."""
        terms: dict[str, torch.Tensor] = {}
        if self.weights["infonce"] > 0:
            terms |= self.infonce(outputs["logit_scale"] * outputs["scores"], same)
        if self.weights["triplet"] > 0:
            terms |= self.triplet(outputs["scores"], same)
            if negative_scores is not None and negative_positive_scores is not None:
                labelled = self.labelled_triplet(
                    negative_positive_scores, negative_scores, negative_weights
                )
                terms |= labelled
                terms["triplet"] = terms["triplet"] + labelled["triplet_labelled"]
        if self.needs_labelled_pairs:
            if pair_logits is None or pair_labels is None:
                raise ValueError("bce/hinge weights are set but no labelled pairs were given")
            if self.weights["bce"] > 0:
                terms |= self.bce(pair_logits, pair_labels, pair_weights)
            if self.weights["hinge"] > 0:
                terms |= self.hinge(pair_logits, pair_labels, pair_weights)
        terms["loss"] = sum(w * terms[name] for name, w in self.weights.items() if w > 0)
        return terms
