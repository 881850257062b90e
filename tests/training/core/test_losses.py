"""Every loss against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import pytest
import torch

from tests.training.core.synthetic import tiny_config
from training.core.losses import (
    BCELoss,
    HingeLoss,
    InfoNCELoss,
    LabelledTripletLoss,
    MatchingLoss,
    TripletLoss,
)

# A 3x3 score matrix: row i = image i, column j = text j, (i, i) positive.
SCORES = torch.tensor(
    [
        [0.9, 0.3, 0.5],
        [0.2, 0.8, 0.7],
        [0.6, 0.1, 0.4],
    ]
)


def approx(value: torch.Tensor, expected: float) -> bool:
    return float(value) == pytest.approx(expected, abs=1e-5)


def test_infonce_two_by_two() -> None:
    # logits [[2, 0], [1, 1]]
    # image->text: row 0: -log(e^2 / (e^2 + e^0)) = log(1 + e^-2) = 0.126928
    #              row 1: -log(e^1 / (e^1 + e^1)) = log 2        = 0.693147  -> mean 0.410038
    # text->image: col 0: [2, 1], target 2: log(1 + e^-1)        = 0.313262
    #              col 1: [0, 1], target 1: log(1 + e^-1)        = 0.313262  -> mean 0.313262
    # infonce = (0.410038 + 0.313262) / 2 = 0.361650
    terms = InfoNCELoss()(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    assert approx(terms["infonce_i2t"], 0.410038)
    assert approx(terms["infonce_t2i"], 0.313262)
    assert approx(terms["infonce"], 0.361650)


def test_infonce_leaves_out_other_captions_of_the_same_image() -> None:
    # Pairs (A, t0), (A, t1), (B, t2): rows 0 and 1 are the same image A, so (0, 1) and (1, 0)
    # are neither positives nor negatives and drop out of both softmaxes.
    # logits [[3, 2, 0], [2, 1, 0], [0, 1, 2]]
    # i2t: row 0 over {3, 0}: log(1 + e^-3)            = 0.048587
    #      row 1 over {1, 0}: log(1 + e^-1)            = 0.313262
    #      row 2 over {0, 1, 2}: log(1 + e + e^2) - 2  = 0.407606   -> mean 0.256485
    # t2i: col 0 over {3, 0}: log(1 + e^-3)            = 0.048587
    #      col 1 over {1, 1}: log 2                    = 0.693147
    #      col 2 over {0, 0, 2}: log(2 + e^2) - 2      = 0.239550   -> mean 0.327095
    # infonce = (0.256485 + 0.327095) / 2 = 0.291790
    logits = torch.tensor([[3.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    terms = InfoNCELoss()(logits, same)
    assert approx(terms["infonce_i2t"], 0.256485)
    assert approx(terms["infonce_t2i"], 0.327095)
    assert approx(terms["infonce"], 0.291790)


def test_triplet_hardest_negative() -> None:
    # margin 0.2. Image anchors (row i, negatives j != i): max(0, 0.2 - s_ii + s_ij)
    #   row 0 (s_00 = 0.9): j=1: 0.2-0.9+0.3 = -0.4 -> 0;  j=2: 0.2-0.9+0.5 = -0.2 -> 0;  max 0
    #   row 1 (s_11 = 0.8): j=0: 0.2-0.8+0.2 = -0.4 -> 0;  j=2: 0.2-0.8+0.7 =  0.1;       max 0.1
    #   row 2 (s_22 = 0.4): j=0: 0.2-0.4+0.6 =  0.4;       j=1: 0.2-0.4+0.1 = -0.1 -> 0;  max 0.4
    #   i2t = (0 + 0.1 + 0.4) / 3 = 0.166667
    # Text anchors (column j, negatives i != j): max(0, 0.2 - s_jj + s_ij)
    #   col 0 (0.9): i=1: 0.2-0.9+0.2 < 0;  i=2: 0.2-0.9+0.6 = -0.1 -> 0;  max 0
    #   col 1 (0.8): i=0: 0.2-0.8+0.3 < 0;  i=2: 0.2-0.8+0.1 < 0;          max 0
    #   col 2 (0.4): i=0: 0.2-0.4+0.5 = 0.3;  i=1: 0.2-0.4+0.7 = 0.5;      max 0.5
    #   t2i = (0 + 0 + 0.5) / 3 = 0.166667
    # triplet = 0.166667 + 0.166667 = 0.333333
    terms = TripletLoss(margin=0.2, hardest=True)(SCORES)
    assert approx(terms["triplet_i2t"], 0.5 / 3)
    assert approx(terms["triplet_t2i"], 0.5 / 3)
    assert approx(terms["triplet"], 1.0 / 3)


def test_triplet_sum_over_negatives() -> None:
    # Same violations as above, summed instead of maxed:
    #   i2t rows: 0, 0.1, 0.4            -> mean 0.5 / 3 = 0.166667
    #   t2i cols: 0, 0,   0.3 + 0.5 = 0.8 -> mean 0.8 / 3 = 0.266667
    # triplet = 1.3 / 3 = 0.433333
    terms = TripletLoss(margin=0.2, hardest=False)(SCORES)
    assert approx(terms["triplet_i2t"], 0.5 / 3)
    assert approx(terms["triplet_t2i"], 0.8 / 3)
    assert approx(terms["triplet"], 1.3 / 3)


def test_triplet_ignores_same_image_columns() -> None:
    # Declaring text 2 a positive of image 1 removes the (1, 2) violations: row 1's 0.1 and
    # column 2's 0.5 (as image 1 negative). Hardest: i2t = (0 + 0 + 0.4) / 3; t2i: col 2 keeps
    # i=0 (0.3) -> (0 + 0 + 0.3) / 3.
    same = torch.eye(3, dtype=torch.bool)
    same[1, 2] = True
    terms = TripletLoss(margin=0.2, hardest=True)(SCORES, same)
    assert approx(terms["triplet_i2t"], 0.4 / 3)
    assert approx(terms["triplet_t2i"], 0.3 / 3)


def test_bce() -> None:
    # logits [0, 2], labels [1, 0]:
    #   -log sigmoid(0)      = log 2         = 0.693147
    #   -log(1 - sigmoid(2)) = log(1 + e^2)  = 2.126928
    # mean 1.410038; weights [3, 1]: (3 * 0.693147 + 2.126928) / 4 = 1.051592
    logits, labels = torch.tensor([0.0, 2.0]), torch.tensor([1, 0])
    assert approx(BCELoss()(logits, labels)["bce"], 1.410038)
    assert approx(BCELoss()(logits, labels, torch.tensor([3.0, 1.0]))["bce"], 1.051592)


def test_hinge() -> None:
    # z = [0.5, -2, 0.3], y = [1, 0, 0] -> signs [+1, -1, -1], margin 1:
    #   max(0, 1 - 0.5) = 0.5;  max(0, 1 - 2) = 0;  max(0, 1 + 0.3) = 1.3   -> mean 0.6
    terms = HingeLoss(margin=1.0)(torch.tensor([0.5, -2.0, 0.3]), torch.tensor([1, 0, 0]))
    assert approx(terms["hinge"], 0.6)


def test_labelled_triplet() -> None:
    # margin 0.2; (positive, negative) = (0.9, 0.5): 0.2 - 0.9 + 0.5 = -0.2 -> 0;
    # (0.4, 0.5): 0.2 - 0.4 + 0.5 = 0.3; (0.1, 0.3): 0.2 - 0.1 + 0.3 = 0.4 -> mean 0.7 / 3.
    # Weighted [1, 2, 1]: (0 + 0.6 + 0.4) / 4 = 0.25.
    positive, negative = torch.tensor([0.9, 0.4, 0.1]), torch.tensor([0.5, 0.5, 0.3])
    loss = LabelledTripletLoss(margin=0.2)
    assert approx(loss(positive, negative)["triplet_labelled"], 0.7 / 3)
    assert approx(loss(positive, negative, torch.tensor([1.0, 2.0, 1.0]))["triplet_labelled"], 0.25)


def test_matching_loss_adds_labelled_negatives_to_the_triplet(tmp_path) -> None:
    config = tiny_config(tmp_path, w_infonce=1.0, w_triplet=0.5)
    outputs = {"scores": SCORES, "logit_scale": torch.tensor(1.0)}
    terms = MatchingLoss(config)(
        outputs,
        negative_scores=torch.tensor([0.5, 0.5, 0.3]),
        negative_positive_scores=torch.tensor([0.9, 0.4, 0.1]),
    )
    assert approx(terms["triplet_labelled"], 0.7 / 3)
    assert approx(terms["triplet"], 1 / 3 + 0.7 / 3)
    infonce = float(InfoNCELoss()(SCORES)["infonce"])
    assert approx(terms["loss"], infonce + 0.5 * (1 / 3 + 0.7 / 3))


def test_matching_loss_weighs_the_terms(tmp_path) -> None:
    # infonce on logit_scale * scores with scale 1 -> InfoNCE of SCORES itself; triplet hardest
    # 0.333333; bce on [0, 2] / [1, 0] 1.410038; hinge on the same pairs: max(0, 1 - 0) = 1,
    # max(0, 1 + 2) = 3 -> 2.0.
    config = tiny_config(tmp_path, w_infonce=1.0, w_triplet=0.5, w_bce=2.0, w_hinge=0.25)
    outputs = {"scores": SCORES, "logit_scale": torch.tensor(1.0)}
    terms = MatchingLoss(config)(
        outputs, pair_logits=torch.tensor([0.0, 2.0]), pair_labels=torch.tensor([1, 0])
    )
    infonce = float(InfoNCELoss()(SCORES)["infonce"])
    assert approx(terms["triplet"], 1 / 3)
    assert approx(terms["hinge"], 2.0)
    assert approx(terms["loss"], infonce + 0.5 / 3 + 2 * 1.410038 + 0.25 * 2.0)


def test_matching_loss_skips_switched_off_terms(tmp_path) -> None:
    terms = MatchingLoss(tiny_config(tmp_path))(
        {"scores": SCORES, "logit_scale": torch.tensor(1.0)}
    )
    assert set(terms) == {"loss", "infonce", "infonce_i2t", "infonce_t2i"}


def test_matching_loss_needs_labelled_pairs_for_bce(tmp_path) -> None:
    loss = MatchingLoss(tiny_config(tmp_path, w_bce=1.0))
    with pytest.raises(ValueError, match="no labelled pairs"):
        loss({"scores": SCORES, "logit_scale": torch.tensor(1.0)})
