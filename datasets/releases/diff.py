"""What changed between two releases' pairs tables: added, removed, relabelled, moved.

Both sides are streams of :class:`PairState` sorted by ``pair_id`` (strictly ascending, which
also means unique); :func:`iter_changes` merge-joins them holding one row of each, so a
million-row diff runs in constant memory. Pair ids are stable database ids, so the same id in
two releases is the same image–caption pair.

The new release's table is written in ``split, image_id, pair_id`` order, so the simplest
source for both sides is :func:`read_pair_states` on the two ``pairs.parquet`` files: it reads
only the four columns and sorts them by pair id (about 25 bytes a row), or stream the new side
from the database ``ORDER BY pair_id``.

``diff.jsonl`` has one line per changed pair, sorted by pair id, with sorted keys::

    {"change":"modified","fields":["label"],"new":{...},"old":{...},"pair_id":7}

``change`` is ``added``, ``removed`` or ``modified``; ``fields`` lists which of label, split
and kind differ; ``old`` and ``new`` hold label, split and kind (``null`` for the side without
the pair).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow.parquet as pq

DIFF_FILE = "diff.jsonl"
STATE_COLUMNS = ("pair_id", "label", "split", "kind")
_BATCH_ROWS = 65_536
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))

ERROR_NOT_SORTED = (
    "The {side} release's pairs must be sorted by pair_id: {pair_id} after {previous}."
)


class PairState(NamedTuple):
    """The parts of a pair a release diff compares."""

    pair_id: int
    label: int
    split: str
    kind: str


@dataclass(frozen=True)
class PairChange:
    """One pair that differs; ``old`` or ``new`` is ``None`` when it is added or removed."""

    pair_id: int
    old: PairState | None
    new: PairState | None

    @property
    def change(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "modified"

    @property
    def fields(self) -> tuple[str, ...]:
        """Which of label, split and kind differ (empty for added and removed pairs)."""
        if self.old is None or self.new is None:
            return ()
        return tuple(
            name
            for name in ("label", "split", "kind")
            if getattr(self.old, name) != getattr(self.new, name)
        )

    def to_json(self) -> str:
        """The change as one ``diff.jsonl`` line, without the newline."""
        return _JSON.encode(
            {
                "pair_id": self.pair_id,
                "change": self.change,
                "fields": list(self.fields),
                "old": _state_json(self.old),
                "new": _state_json(self.new),
            }
        )


@dataclass(frozen=True)
class DiffCounts:
    """Totals of a diff. A pair relabelled and moved counts in both ``relabelled`` and ``moved``.

    ``modified`` counts pairs with any difference, ``unchanged`` pairs identical in both;
    ``relabelled`` splits into ``became_match`` (0 → 1) and ``became_no_match`` (1 → 0).
    """

    old_total: int = 0
    new_total: int = 0
    added: int = 0
    removed: int = 0
    modified: int = 0
    relabelled: int = 0
    became_match: int = 0
    became_no_match: int = 0
    moved: int = 0
    kind_changed: int = 0
    unchanged: int = 0


class _Tally:
    """Mutable counters behind :class:`DiffCounts`, updated as the merge join advances."""

    def __init__(self) -> None:
        self.values = dict.fromkeys(DiffCounts.__dataclass_fields__, 0)

    def add(self, change: PairChange) -> None:
        values = self.values
        if change.old is None:
            values["added"] += 1
            return
        if change.new is None:
            values["removed"] += 1
            return
        values["modified"] += 1
        if change.old.label != change.new.label:
            values["relabelled"] += 1
            values["became_match" if change.new.label == 1 else "became_no_match"] += 1
        if change.old.split != change.new.split:
            values["moved"] += 1
        if change.old.kind != change.new.kind:
            values["kind_changed"] += 1

    def counts(self) -> DiffCounts:
        return DiffCounts(**self.values)


def iter_changes(
    *, old: Iterable[Sequence[Any]], new: Iterable[Sequence[Any]]
) -> Iterator[PairChange]:
    """Merge-join two pair-id-sorted streams of (pair_id, label, split, kind); yield the changes.

    Raises ``ValueError`` if either side is not strictly ascending by pair id.
    """
    return _merge(old=old, new=new, tally=_Tally())


def diff_counts(*, old: Iterable[Sequence[Any]], new: Iterable[Sequence[Any]]) -> DiffCounts:
    """Only the totals of the diff between two pair-id-sorted streams."""
    tally = _Tally()
    for _change in _merge(old=old, new=new, tally=tally):
        pass
    return tally.counts()


def write_diff(
    *, path: Path, old: Iterable[Sequence[Any]], new: Iterable[Sequence[Any]]
) -> DiffCounts:
    """Write ``diff.jsonl`` (one line per changed pair, by pair id) and return the totals.

    With no previous release pass ``old=()``: every pair is then ``added``.
    """
    tally = _Tally()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as out:
        for change in _merge(old=old, new=new, tally=tally):
            out.write(change.to_json())
            out.write("\n")
    return tally.counts()


def read_pair_states(*, path: Path) -> Iterator[PairState]:
    """A release's ``pairs.parquet`` as :class:`PairState` sorted by pair id.

    Reads only the four compared columns (split and kind as dictionaries) and sorts them in
    Arrow: about 25 bytes per pair in memory, 25 MB for a million.
    """
    table = pq.read_table(
        Path(path), columns=list(STATE_COLUMNS), read_dictionary=["split", "kind"]
    ).sort_by("pair_id")
    for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
        columns = [batch.column(name).to_pylist() for name in STATE_COLUMNS]
        yield from map(PairState._make, zip(*columns, strict=True))


def _merge(
    *, old: Iterable[Sequence[Any]], new: Iterable[Sequence[Any]], tally: _Tally
) -> Iterator[PairChange]:
    values = tally.values
    old_rows = _checked(old, side="old")
    new_rows = _checked(new, side="new")
    a = next(old_rows, None)
    b = next(new_rows, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.pair_id < b.pair_id):
            assert a is not None
            values["old_total"] += 1
            change = PairChange(pair_id=a.pair_id, old=a, new=None)
            a = next(old_rows, None)
        elif a is None or b.pair_id < a.pair_id:
            values["new_total"] += 1
            change = PairChange(pair_id=b.pair_id, old=None, new=b)
            b = next(new_rows, None)
        else:
            values["old_total"] += 1
            values["new_total"] += 1
            same = a == b
            change = PairChange(pair_id=a.pair_id, old=a, new=b)
            a = next(old_rows, None)
            b = next(new_rows, None)
            if same:
                values["unchanged"] += 1
                continue
        tally.add(change)
        yield change


def _checked(rows: Iterable[Sequence[Any]], *, side: str) -> Iterator[PairState]:
    previous: int | None = None
    for row in rows:
        if type(row) is PairState:
            state = row
        else:
            pair_id, label, split, kind = row
            state = PairState(int(pair_id), int(label), str(split), str(kind))
        if previous is not None and state.pair_id <= previous:
            raise ValueError(
                ERROR_NOT_SORTED.format(side=side, pair_id=state.pair_id, previous=previous)
            )
        previous = state.pair_id
        yield state


def _state_json(state: PairState | None) -> dict[str, object] | None:
    if state is None:
        return None
    return {"label": state.label, "split": state.split, "kind": state.kind}
