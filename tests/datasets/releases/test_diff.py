"""Release diff: a merge join of two pair-id-sorted tables into counts and diff.jsonl."""

from __future__ import annotations

import json
import random

import pytest

from datasets.releases.diff import (
    ERROR_NOT_SORTED,
    DiffCounts,
    PairState,
    diff_counts,
    iter_changes,
    read_pair_states,
    write_diff,
)
from datasets.releases.exporters import PAIRS_PARQUET, write_parquet

OLD = [
    (1, 1, "train", "positive"),
    (2, 0, "train", "random_negative"),
    (3, 0, "val", "hard_negative"),
    (5, 1, "test", "positive"),
    (6, 1, "train", "positive"),
]
NEW = [
    (2, 1, "train", "random_negative"),  # relabelled 0 → 1
    (3, 0, "test", "hard_negative"),  # moved val → test
    (4, 0, "train", "hard_negative"),  # added
    (5, 0, "val", "positive"),  # relabelled 1 → 0 and moved
    (6, 1, "train", "positive"),  # unchanged
]  # 1 removed


def test_counts_on_a_hand_made_example():
    assert diff_counts(old=OLD, new=NEW) == DiffCounts(
        old_total=5,
        new_total=5,
        added=1,
        removed=1,
        modified=3,
        relabelled=2,
        became_match=1,
        became_no_match=1,
        moved=2,
        kind_changed=0,
        unchanged=1,
    )


def test_diff_file_lists_each_changed_pair_once(tmp_path):
    path = tmp_path / "diff.jsonl"
    counts = write_diff(path=path, old=iter(OLD), new=iter(NEW))
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["pair_id"], r["change"], r["fields"]) for r in records] == [
        (1, "removed", []),
        (2, "modified", ["label"]),
        (3, "modified", ["split"]),
        (4, "added", []),
        (5, "modified", ["label", "split"]),
    ]
    assert records[0]["new"] is None and records[3]["old"] is None
    assert records[4]["old"] == {"kind": "positive", "label": 1, "split": "test"}
    assert all(list(json.loads(line)) == sorted(json.loads(line)) for line in lines)
    assert counts.modified == 3


def test_first_release_diff_is_all_added(tmp_path):
    counts = write_diff(path=tmp_path / "diff.jsonl", old=(), new=NEW)
    assert (counts.added, counts.removed, counts.old_total) == (5, 0, 0)


@pytest.mark.parametrize("side", ["old", "new"])
def test_unsorted_input_is_rejected(side):
    unsorted = [OLD[1], OLD[0]]
    sides = {"old": OLD, "new": NEW, side: unsorted}
    with pytest.raises(ValueError) as excinfo:
        diff_counts(old=sides["old"], new=sides["new"])
    assert str(excinfo.value) == ERROR_NOT_SORTED.format(side=side, pair_id=1, previous=2)


def test_random_tables_agree_with_a_dictionary_diff():
    rng = random.Random(11)
    splits, kinds = ("train", "val", "test"), ("positive", "random_negative", "hard_negative")
    old = {
        pid: PairState(pid, rng.randint(0, 1), rng.choice(splits), rng.choice(kinds))
        for pid in rng.sample(range(10_000), 5_000)
    }
    new = {}
    for pid in rng.sample(range(10_000), 5_000):
        state = old.get(pid) or PairState(pid, 1, "train", "positive")
        if rng.random() < 0.1:
            state = state._replace(label=1 - state.label)
        if rng.random() < 0.05:
            state = state._replace(split=rng.choice(splits))
        new[pid] = state
    changes = list(iter_changes(old=sorted(old.values()), new=sorted(new.values())))
    expected = sorted(pid for pid in old.keys() | new.keys() if old.get(pid) != new.get(pid))
    assert [c.pair_id for c in changes] == expected
    counts = diff_counts(old=sorted(old.values()), new=sorted(new.values()))
    assert counts.added == len(new.keys() - old.keys())
    assert counts.removed == len(old.keys() - new.keys())
    common = old.keys() & new.keys()
    assert counts.relabelled == sum(old[p].label != new[p].label for p in common)
    assert counts.moved == sum(old[p].split != new[p].split for p in common)
    assert counts.unchanged == sum(old[p] == new[p] for p in common)


def test_read_pair_states_sorts_a_release_parquet_by_pair_id(tmp_path):
    rows = []
    # Release order (split, image_id, pair_id) is not pair id order.
    for split, image_id, pair_id in [
        ("test", 1, 9),
        ("test", 2, 3),
        ("train", 0, 5),
        ("train", 0, 7),
    ]:
        rows.append(
            {
                "pair_id": pair_id,
                "image_id": image_id,
                "caption_id": pair_id,
                "image_path": f"images/{image_id}.jpg",
                "image_sha256": "0" * 64,
                "caption": "a caption",
                "kind": "positive",
                "label": pair_id % 2,
                "label_source": "crowd",
                "confidence": 1.0,
                "n_judgments": 3,
                "split": split,
                "cluster_id": image_id,
                "weight": 1.0,
                "license": "CC0",
            }
        )
    write_parquet(path=tmp_path / PAIRS_PARQUET, rows=rows)
    assert list(read_pair_states(path=tmp_path / PAIRS_PARQUET)) == [
        PairState(3, 1, "test", "positive"),
        PairState(5, 1, "train", "positive"),
        PairState(7, 1, "train", "positive"),
        PairState(9, 1, "test", "positive"),
    ]
