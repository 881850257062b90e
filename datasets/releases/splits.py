"""Train/validation/test assignment per duplicate cluster, stable from release to release.

A cluster (an image and its near-duplicates) is the unit of assignment, so an image, its
duplicates and all their pairs always sit in one split. A cluster seen for the first time gets
its split from a SHA-256 of the project's salt and its canonical image id: the same on every
machine and in every process (Python's ``hash()`` is salted per process), and independent of
how many other clusters exist, so adding images never moves old ones.

A cluster whose images already had a split in the previous release keeps it. When dedup merges
clusters whose members sat in different splits, the merged cluster takes the most held-out of
those splits (test before val before train, :data:`MERGE_PRECEDENCE`): an image that was ever
held out is never handed to training, so the set of images a model could have trained on only
ever grows by images that were never used for evaluation. The images that change split are
reported as moves so the release notes, and evaluations on older models, can account for them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.7, 0.1, 0.2)
# Most held-out first: see the module docstring for why test wins a merge.
MERGE_PRECEDENCE = ("test", "val", "train")

# 53 bits: the most a float in [0, 1) can carry exactly.
_FRACTION_BITS = 53

ERROR_RATIOS_LENGTH = "Split ratios must have three values: train, val, test."
ERROR_RATIOS_NEGATIVE = "Split ratios must not be negative."
ERROR_RATIOS_SUM = "Split ratios must sum to 1."
ERROR_UNKNOWN_SPLIT = "Unknown split {split!r} for image {image_id}."
ERROR_IMAGE_IN_TWO_CLUSTERS = "Image {image_id} belongs to clusters {first} and {second}."


@dataclass(frozen=True, order=True)
class SplitMove:
    """An image whose split differs from the one it had in the previous release."""

    image_id: int
    from_split: str
    to_split: str


@dataclass(frozen=True)
class SplitAssignment:
    """The split of every image and every cluster, and what changed since the previous release.

    ``merged_clusters`` lists the canonical ids of clusters whose members came from more than one
    previous split (the cases :data:`MERGE_PRECEDENCE` resolved).
    """

    image_splits: Mapping[int, str]
    cluster_splits: Mapping[int, str]
    moves: tuple[SplitMove, ...]
    merged_clusters: tuple[int, ...]

    def counts(self) -> dict[str, int]:
        """Number of images per split, every split present."""
        counts = dict.fromkeys(SPLITS, 0)
        for split in self.image_splits.values():
            counts[split] += 1
        return counts


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Check ``ratios`` (train, val, test) and return them as a tuple; raises ``ValueError``."""
    if len(ratios) != len(SPLITS):
        raise ValueError(ERROR_RATIOS_LENGTH)
    if any(r < 0 for r in ratios):
        raise ValueError(ERROR_RATIOS_NEGATIVE)
    if not math.isclose(sum(ratios), 1.0, abs_tol=1e-9):
        raise ValueError(ERROR_RATIOS_SUM)
    train, val, test = (float(r) for r in ratios)
    return train, val, test


def cluster_fraction(*, canonical_id: int, salt: str) -> float:
    """A uniform number in [0, 1) fixed by the salt and the canonical id, on every machine."""
    digest = hashlib.sha256(f"{salt}\x00{canonical_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _FRACTION_BITS)) / (1 << _FRACTION_BITS)


def split_for_cluster(
    *, canonical_id: int, salt: str, ratios: Sequence[float] = DEFAULT_RATIOS
) -> str:
    """The split a cluster gets when none of its images had one before."""
    train, val, _test = validate_ratios(ratios)
    return _split_from_fraction(cluster_fraction(canonical_id=canonical_id, salt=salt), train, val)


def assign_splits(
    *,
    clusters: Mapping[int, Sequence[int]],
    previous: Mapping[int, str],
    salt: str,
    ratios: Sequence[float] = DEFAULT_RATIOS,
) -> SplitAssignment:
    """Give every cluster exactly one split, keeping each where the previous release had it.

    ``clusters`` maps a canonical image id to its member image ids (the canonical id counts as a
    member whether listed or not; a singleton may map to an empty list). ``previous`` maps image
    ids to the split they had in the previous release; ids no longer in any cluster are ignored.
    A cluster with no previous members is placed by :func:`split_for_cluster`; one with members
    from several previous splits takes the first of :data:`MERGE_PRECEDENCE` among them. Every
    image whose split changes is reported in ``moves``, sorted by image id.
    """
    train, val, _test = validate_ratios(ratios)
    image_splits: dict[int, str] = {}
    cluster_splits: dict[int, str] = {}
    owner: dict[int, int] = {}
    moves: list[SplitMove] = []
    merged: list[int] = []
    for canonical_id, members in clusters.items():
        images = _cluster_images(canonical_id, members, owner)
        before = set()
        for image_id in images:
            split = previous.get(image_id)
            if split is not None:
                if split not in SPLITS:
                    raise ValueError(ERROR_UNKNOWN_SPLIT.format(split=split, image_id=image_id))
                before.add(split)
        if not before:
            fraction = cluster_fraction(canonical_id=canonical_id, salt=salt)
            split = _split_from_fraction(fraction, train, val)
        else:
            split = next(s for s in MERGE_PRECEDENCE if s in before)
            if len(before) > 1:
                merged.append(canonical_id)
        cluster_splits[canonical_id] = split
        for image_id in images:
            image_splits[image_id] = split
            was = previous.get(image_id)
            if was is not None and was != split:
                moves.append(SplitMove(image_id=image_id, from_split=was, to_split=split))
    moves.sort()
    merged.sort()
    return SplitAssignment(
        image_splits=image_splits,
        cluster_splits=cluster_splits,
        moves=tuple(moves),
        merged_clusters=tuple(merged),
    )


def _cluster_images(canonical_id: int, members: Sequence[int], owner: dict[int, int]) -> list[int]:
    """The cluster's distinct images, canonical first; an image claimed by two clusters is an error."""
    images = [canonical_id]
    images.extend(m for m in members if m != canonical_id)
    distinct: list[int] = []
    for image_id in images:
        first = owner.get(image_id)
        if first == canonical_id:
            continue  # listed twice within its own cluster
        if first is not None:
            raise ValueError(
                ERROR_IMAGE_IN_TWO_CLUSTERS.format(
                    image_id=image_id, first=first, second=canonical_id
                )
            )
        owner[image_id] = canonical_id
        distinct.append(image_id)
    return distinct


def _split_from_fraction(fraction: float, train: float, val: float) -> str:
    if fraction < train:
        return "train"
    if fraction < train + val:
        return "val"
    return "test"
