"""Split assignment: per cluster, stable across releases and machines, leak-free when clusters merge."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from datasets.releases.splits import (
    ERROR_IMAGE_IN_TWO_CLUSTERS,
    ERROR_RATIOS_LENGTH,
    ERROR_RATIOS_NEGATIVE,
    ERROR_RATIOS_SUM,
    ERROR_UNKNOWN_SPLIT,
    MERGE_PRECEDENCE,
    SPLITS,
    SplitMove,
    assign_splits,
    split_for_cluster,
)

SALT = "concord"


def test_split_for_cluster_is_pinned_across_machines_and_versions():
    # A SHA-256 of salt and id, not hash(): these values must never change, or old releases'
    # clusters would move when a new one is cut on another machine or Python version.
    assert [split_for_cluster(canonical_id=i, salt=SALT) for i in range(1, 11)] == [
        "train", "train", "train", "test", "train", "val", "train", "test", "train", "test",
    ]  # fmt: skip
    assert [split_for_cluster(canonical_id=i, salt="other") for i in range(1, 4)] == [
        "test", "test", "train",
    ]  # fmt: skip


def test_ratios_hold_on_100k_clusters():
    counts = Counter(split_for_cluster(canonical_id=i, salt=SALT) for i in range(100_000))
    for split, ratio in zip(SPLITS, (0.7, 0.1, 0.2), strict=True):
        assert abs(counts[split] / 100_000 - ratio) < 0.005


def test_custom_and_degenerate_ratios():
    counts = Counter(
        split_for_cluster(canonical_id=i, salt=SALT, ratios=(0.5, 0.25, 0.25))
        for i in range(20_000)
    )
    assert abs(counts["train"] / 20_000 - 0.5) < 0.02
    assert {split_for_cluster(canonical_id=i, salt=SALT, ratios=(1, 0, 0)) for i in range(100)} == {
        "train"
    }
    assert {split_for_cluster(canonical_id=i, salt=SALT, ratios=(0, 0, 1)) for i in range(100)} == {
        "test"
    }


@pytest.mark.parametrize(
    ("ratios", "error"),
    [
        ((0.7, 0.3), ERROR_RATIOS_LENGTH),
        ((0.8, -0.1, 0.3), ERROR_RATIOS_NEGATIVE),
        ((0.7, 0.1, 0.1), ERROR_RATIOS_SUM),
    ],
)
def test_bad_ratios_are_rejected(ratios, error):
    with pytest.raises(ValueError) as excinfo:
        split_for_cluster(canonical_id=1, salt=SALT, ratios=ratios)
    assert str(excinfo.value) == error


def test_first_release_uses_the_hash_of_the_canonical_id():
    clusters = {10: [10, 11, 12], 20: [], 30: [31]}
    result = assign_splits(clusters=clusters, previous={}, salt=SALT)
    for canonical, members in clusters.items():
        expected = split_for_cluster(canonical_id=canonical, salt=SALT)
        assert result.cluster_splits[canonical] == expected
        assert {result.image_splits[i] for i in [canonical, *members]} == {expected}
    assert result.moves == ()
    assert sum(result.counts().values()) == 6


def test_clusters_keep_their_previous_split_even_against_the_hash():
    # Cluster 4 hashes to test; the previous release had it in val, so it stays in val.
    assert split_for_cluster(canonical_id=4, salt=SALT) == "test"
    result = assign_splits(clusters={4: [40, 41]}, previous={40: "val"}, salt=SALT)
    assert result.cluster_splits[4] == "val"
    assert result.moves == ()  # 4 and 41 are new, 40 did not move


def test_a_new_canonical_image_does_not_move_the_cluster():
    # Image 40 was canonical in v1 (in train); in v2 a better image 3 became canonical.
    result = assign_splits(clusters={3: [40]}, previous={40: "train"}, salt=SALT)
    assert result.image_splits == {3: "train", 40: "train"}


def test_merged_clusters_resolve_to_the_most_held_out_split_and_report_moves():
    previous = {1: "train", 2: "train", 3: "test", 5: "val", 6: "train", 7: "val"}
    clusters = {1: [2, 3, 4], 5: [6, 7]}
    result = assign_splits(clusters=clusters, previous=previous, salt=SALT)
    assert result.cluster_splits == {1: "test", 5: "val"}
    assert result.image_splits == {
        1: "test",
        2: "test",
        3: "test",
        4: "test",
        5: "val",
        6: "val",
        7: "val",
    }
    assert result.moves == (
        SplitMove(image_id=1, from_split="train", to_split="test"),
        SplitMove(image_id=2, from_split="train", to_split="test"),
        SplitMove(image_id=6, from_split="train", to_split="val"),
    )
    assert result.merged_clusters == (1, 5)


def test_random_merges_never_leak_and_report_every_move():
    rng = random.Random(7)
    # v1: 3,000 images in clusters of 1–3.
    images = list(range(3_000))
    v1_clusters: dict[int, list[int]] = {}
    i = 0
    while i < len(images):
        size = rng.randint(1, 3)
        v1_clusters[images[i]] = images[i + 1 : i + size]
        i += size
    v1 = assign_splits(clusters=v1_clusters, previous={}, salt=SALT)
    # v2: dedup merges random pairs of v1 clusters and adds 500 new images.
    canonicals = list(v1_clusters)
    rng.shuffle(canonicals)
    v2_clusters: dict[int, list[int]] = {}
    for a, b in zip(canonicals[0::2], canonicals[1::2], strict=False):
        keep, other = min(a, b), max(a, b)
        v2_clusters[keep] = [*v1_clusters[a], *v1_clusters[b], other]
    if len(canonicals) % 2:
        last = canonicals[-1]
        v2_clusters[last] = list(v1_clusters[last])
    for new in range(3_000, 3_500):
        v2_clusters[new] = []
    v2 = assign_splits(clusters=v2_clusters, previous=v1.image_splits, salt=SALT)

    for canonical, members in v2_clusters.items():
        assert len({v2.image_splits[m] for m in [canonical, *members]}) == 1
    moved = {
        (image, v1.image_splits[image], v2.image_splits[image])
        for image in v1.image_splits
        if v1.image_splits[image] != v2.image_splits[image]
    }
    assert {(m.image_id, m.from_split, m.to_split) for m in v2.moves} == moved
    assert moved  # the merges did force some moves
    # Nothing held out ever enters training.
    rank = {split: MERGE_PRECEDENCE.index(split) for split in SPLITS}
    assert all(rank[to] < rank[was] for _image, was, to in moved)
    assert not any(to == "train" for _image, _was, to in moved)
    # The same input gives the same answer, whatever the dict order.
    shuffled = dict(sorted(v2_clusters.items(), reverse=True))
    again = assign_splits(clusters=shuffled, previous=dict(v1.image_splits), salt=SALT)
    assert dict(again.image_splits) == dict(v2.image_splits)
    assert again.moves == v2.moves


def test_an_image_in_two_clusters_is_an_error():
    with pytest.raises(ValueError) as excinfo:
        assign_splits(clusters={1: [2], 3: [2]}, previous={}, salt=SALT)
    assert str(excinfo.value) == ERROR_IMAGE_IN_TWO_CLUSTERS.format(image_id=2, first=1, second=3)


def test_unknown_previous_split_is_an_error():
    with pytest.raises(ValueError) as excinfo:
        assign_splits(clusters={1: []}, previous={1: "dev"}, salt=SALT)
    assert str(excinfo.value) == ERROR_UNKNOWN_SPLIT.format(split="dev", image_id=1)
