"""How an item label decides a proposal, and the pair kind that follows."""

import pytest

from datasets.models import PairKind
from training.negatives.models import Outcome, ProposalSource
from training.negatives.services.outcomes import outcome_of, pair_kind_of


@pytest.mark.parametrize(
    ("adjudicated", "status", "label", "expected"),
    [
        (None, None, None, Outcome.PENDING),  # no judgments yet
        (None, "pending", 1, Outcome.PENDING),  # too few to settle
        (None, "disputed", 0, Outcome.PENDING),
        (None, "agreed", 0, Outcome.NEGATIVE),
        (None, "agreed", 1, Outcome.POSITIVE),
        (1, "disputed", 0, Outcome.POSITIVE),  # a manager's word is final
        (0, "agreed", 1, Outcome.NEGATIVE),
    ],
)
def test_outcome_of(adjudicated, status, label, expected):
    assert outcome_of(adjudicated=adjudicated, status=status, label=label) == expected


@pytest.mark.parametrize(
    ("source", "negative_kind"),
    [
        (ProposalSource.RANDOM, PairKind.RANDOM_NEGATIVE),
        (ProposalSource.MODEL, PairKind.HARD_NEGATIVE),
        (ProposalSource.TEXT_EDIT, PairKind.TEXT_EDIT_NEGATIVE),
    ],
)
def test_pair_kind_follows_the_outcome(source, negative_kind):
    assert pair_kind_of(source=source, outcome=Outcome.NEGATIVE) == negative_kind
    assert pair_kind_of(source=source, outcome=Outcome.PENDING) == negative_kind
    assert pair_kind_of(source=source, outcome=Outcome.POSITIVE) == PairKind.POSITIVE
