"""Challenge items: one image, a known positive and proposed negatives; mark every match.

Each caption of a challenge is a :class:`~annotate.models.ChallengeOption`. An answer is one
:class:`~annotate.models.Judgment` on the challenge task (so the queue's slots, leases and
idempotent submit work as for any task) plus one :class:`~annotate.models.ChallengeMark` per
option, marked or not: each mark is a judgment on that option's pair, aggregated with every
other judgment (see :mod:`annotate.agreement.services.consensus`). The check option's known answer is "match":
an annotator who leaves it unmarked fails an attention check, recorded as ``gold_correct``.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from annotate.models import ChallengeMark, ChallengeOption, Judgment, Task

BAD_MARKS = "Those are not captions of this item."


class MarksRefused(ValueError):
    pass


@dataclass(frozen=True)
class ShownOption:
    """An option as an annotator sees it: numbered from 1 in their own order."""

    number: int
    option_id: int
    text: str


def options_for(*, task: Task) -> list[ChallengeOption]:
    return list(task.options.select_related("pair__caption").order_by("position"))


def options_shown(*, options: Sequence[ChallengeOption], lease_id: int) -> list[ShownOption]:
    """The options in an order fixed per lease: every annotator sees a different order (so the
    known positive is not always in one place), and a reload shows the same one."""
    shuffled = list(options)
    random.Random(lease_id).shuffle(shuffled)
    return [
        ShownOption(number=i, option_id=option.pk, text=option.pair.caption.text)
        for i, option in enumerate(shuffled, start=1)
    ]


def marks_check(*, task: Task, marked: Collection[int]) -> list[ChallengeOption]:
    """The task's options, after checking that every marked id is one of them."""
    options = list(ChallengeOption.objects.filter(task=task).order_by("position"))
    if not set(marked) <= {option.pk for option in options}:
        raise MarksRefused(BAD_MARKS)
    return options


def check_passed(*, options: Sequence[ChallengeOption], marked: Collection[int]) -> bool | None:
    """Whether the known positive was marked (None for a challenge without a check)."""
    checks = [option for option in options if option.is_check]
    return checks[0].pk in marked if checks else None


def marks_write(
    *, judgment: Judgment, options: Sequence[ChallengeOption], marked: Collection[int]
) -> None:
    ChallengeMark.objects.bulk_create(
        ChallengeMark(judgment=judgment, option=option, marked=option.pk in marked)
        for option in options
    )
