"""Near-duplicate clusters of a project's images, and the manager's decisions on them.

The pure search and grouping live in datasets/curation/dedup.py; this module loads a project's stored
hashes and decisions, runs them, and writes the clusters back. Clusters are never edited by hand:
they are recomputed — for the connected part of the duplicate graph that new images or a decision
touched, or for the whole project — and the decisions (must-link / cannot-link pairs) are applied
on every recomputation, so they survive it.

Everything that writes runs in one transaction holding the project's row lock, so two workers
joining images to the same project take turns and neither misses the other's images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q

from datasets.curation.dedup import (
    DHASH_THRESHOLD_DEFAULT,
    Clustering,
    HammingIndex,
    HashPair,
    clusters_build,
    pairs_confirm,
)
from datasets.curation.quality import IMAGE_BLANK
from datasets.models import (
    ClusterMember,
    DecisionKind,
    DuplicateCluster,
    DuplicateDecision,
    Image,
    Project,
)

NOT_A_MEMBER = "That image is not in this cluster."


@dataclass(frozen=True)
class ClusterSummary:
    clusters: int
    duplicates: int  # non-canonical members: images that get no new tasks
    confirmed: int


@dataclass
class _ProjectHashes:
    """A project's hashed images as arrays, and an index over them for the pair search."""

    ids: np.ndarray
    phashes: np.ndarray
    dhash_by_id: dict[int, int]
    phash_by_id: dict[int, int]
    index: HammingIndex


def project_lock(*, project_id: int) -> Project | None:
    """Lock the project's row for the rest of the transaction (SQLite: the IMMEDIATE write lock
    already serialises writers)."""
    return Project.objects.select_for_update().filter(pk=project_id).first()


def _hashes_load(*, project: Project) -> _ProjectHashes:
    rows = list(
        Image.objects.filter(project=project, hashed_at__isnull=False)
        # A blank (uniform) image hashes like every other blank image whatever its size or
        # colour: that likeness is no evidence of a copy, so blank images join no cluster.
        .exclude(flags__code=IMAGE_BLANK.code)
        .order_by()
        .values_list("pk", "phash", "dhash")
    )
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    # Signed 64-bit in the database; the same bits read as unsigned are the hash.
    phashes = np.array([r[1] for r in rows], dtype=np.int64).view(np.uint64)
    dhashes = np.array([r[2] for r in rows], dtype=np.int64).view(np.uint64)
    return _ProjectHashes(
        ids=ids,
        phashes=phashes,
        dhash_by_id=dict(zip(ids.tolist(), dhashes.tolist(), strict=True)),
        phash_by_id=dict(zip(ids.tolist(), phashes.tolist(), strict=True)),
        index=HammingIndex.build(
            ids=ids, hashes=phashes, threshold=project.near_duplicate_threshold
        ),
    )


def _decisions_load(*, project: Project) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    must, cannot = [], []
    for a, b, kind in DuplicateDecision.objects.filter(project=project).values_list(
        "image_a_id", "image_b_id", "kind"
    ):
        (must if kind == DecisionKind.SAME else cannot).append((a, b))
    return must, cannot


def _component(
    *, hashes: _ProjectHashes, seeds: Iterable[int], must: list[tuple[int, int]]
) -> tuple[set[int], set[HashPair]]:
    """The images connected to the seeds by near-duplicate pairs or must-links, and their pairs.

    Clusters never cross these components, so reclustering one gives exactly what a full
    recomputation gives for it.
    """
    position = {image_id: i for i, image_id in enumerate(hashes.ids.tolist())}
    linked: dict[int, set[int]] = {}
    for a, b in must:
        linked.setdefault(a, set()).add(b)
        linked.setdefault(b, set()).add(a)
    seen = set(seeds)
    frontier = sorted(seen)
    pairs: set[HashPair] = set()
    while frontier:
        indexed = [i for i in frontier if i in position]
        found = hashes.index.query(
            ids=indexed, hashes=hashes.phashes[[position[i] for i in indexed]]
        )
        confirmed = pairs_confirm(
            pairs=(p for p in found if p.a != p.b),
            hashes=hashes.dhash_by_id,
            threshold=DHASH_THRESHOLD_DEFAULT,
        )
        pairs.update(confirmed)
        reached = {x for p in confirmed for x in (p.a, p.b)}
        reached.update(x for i in frontier for x in linked.get(i, ()))
        frontier = sorted(reached - seen)
        seen.update(frontier)
    return seen, pairs


def _clusters_write(*, project: Project, clustering: Clustering, affected: set[int]) -> None:
    """Replace the clusters touching ``affected`` with the new ones."""
    DuplicateCluster.objects.filter(project=project, members__image_id__in=affected).delete()
    fresh = [c for c in clustering.clusters if c.canonical in affected]
    rows = DuplicateCluster.objects.bulk_create(
        [
            DuplicateCluster(
                project=project,
                canonical_id=c.canonical,
                size=len(c.members),
                doubt=c.doubt,
                confirmed=c.confirmed,
            )
            for c in fresh
        ]
    )
    ClusterMember.objects.bulk_create(
        [
            ClusterMember(cluster_id=row.pk, image_id=member)
            for row, c in zip(rows, fresh, strict=True)
            for member in c.members
        ]
    )


def _recluster(*, project: Project, seeds: Iterable[int]) -> None:
    hashes = _hashes_load(project=project)
    must, cannot = _decisions_load(project=project)
    members, pairs = _component(hashes=hashes, seeds=seeds, must=must)
    clustering = clusters_build(
        pairs=pairs,
        must_link=[(a, b) for a, b in must if a in members],
        cannot_link=[(a, b) for a, b in cannot if a in members and b in members],
        hashes={m: hashes.phash_by_id[m] for m in members if m in hashes.phash_by_id},
    )
    _clusters_write(project=project, clustering=clustering, affected=members)


def clusters_join(*, project: Project, image_ids: list[int]) -> None:
    """Join newly hashed images to the project's clusters without recomputing the project.

    Call inside the transaction that stored their hashes, after ``project_lock``. Only the part
    of the duplicate graph connected to the new images is reclustered.
    """
    _recluster(project=project, seeds=image_ids)


@transaction.atomic
def clusters_recompute(*, project: Project) -> ClusterSummary:
    """Recluster the whole project from its stored hashes, honouring every decision.

    Needed after the near-duplicate threshold changes; otherwise it gives what incremental
    joining gave.
    """
    project_lock(project_id=project.pk)
    hashes = _hashes_load(project=project)
    must, cannot = _decisions_load(project=project)
    pairs = pairs_confirm(
        pairs=hashes.index.pairs(), hashes=hashes.dhash_by_id, threshold=DHASH_THRESHOLD_DEFAULT
    )
    clustering = clusters_build(
        pairs=pairs,
        must_link=must,
        cannot_link=cannot,
        hashes=hashes.phash_by_id,
    )
    DuplicateCluster.objects.filter(project=project).delete()
    _clusters_write(
        project=project,
        clustering=clustering,
        affected={m for c in clustering.clusters for m in c.members},
    )
    return clusters_summary(project=project)


def clusters_summary(*, project: Project) -> ClusterSummary:
    """How many clusters, duplicates and confirmed clusters the project has."""
    clusters = DuplicateCluster.objects.filter(project=project)
    return ClusterSummary(
        clusters=clusters.count(),
        duplicates=ClusterMember.objects.filter(cluster__project=project).count()
        - clusters.count(),
        confirmed=clusters.filter(confirmed=True).count(),
    )


def _decide(*, project: Project, a: int, b: int, kind: str, user: AbstractBaseUser | None) -> None:
    low, high = (a, b) if a < b else (b, a)
    DuplicateDecision.objects.update_or_create(
        image_a_id=low,
        image_b_id=high,
        defaults={"project": project, "kind": kind, "decided_by": user},
    )


@transaction.atomic
def cluster_confirm(*, cluster: DuplicateCluster, user: AbstractBaseUser | None) -> None:
    """The manager confirms that all members are the same picture: a must-link from the
    canonical image to each member, and any split among them is withdrawn."""
    project = project_lock(project_id=cluster.project_id)
    members = list(cluster.members.values_list("image_id", flat=True))
    DuplicateDecision.objects.filter(
        image_a_id__in=members, image_b_id__in=members, kind=DecisionKind.DIFFERENT
    ).delete()
    for member in members:
        if member != cluster.canonical_id:
            _decide(
                project=project, a=cluster.canonical_id, b=member, kind=DecisionKind.SAME, user=user
            )
    _recluster(project=project, seeds=members)


@transaction.atomic
def cluster_member_split(
    *, cluster: DuplicateCluster, image_id: int, user: AbstractBaseUser | None
) -> None:
    """The manager says this member is not a duplicate of the others: a cannot-link to each other
    member (replacing any earlier confirmation), so no recomputation puts them together again."""
    project = project_lock(project_id=cluster.project_id)
    members = list(cluster.members.values_list("image_id", flat=True))
    if image_id not in members:
        raise ValueError(NOT_A_MEMBER)
    for member in members:
        if member != image_id:
            _decide(project=project, a=image_id, b=member, kind=DecisionKind.DIFFERENT, user=user)
    # A must-link elsewhere that still ties the image in would override the cannot-links.
    DuplicateDecision.objects.filter(
        Q(image_a_id=image_id) | Q(image_b_id=image_id),
        kind=DecisionKind.SAME,
        project=project,
    ).delete()
    _recluster(project=project, seeds=members)


# --- the manager's review -----------------------------------------------------------------


@dataclass(frozen=True)
class ClusterPage:
    clusters: list[DuplicateCluster]
    next_after: str | None  # cursor to continue after, or None on the last page


def cluster_cursor(*, cluster: DuplicateCluster) -> str:
    return f"{int(cluster.confirmed)}.{cluster.doubt}.{cluster.pk}"


def clusters_page(*, project: Project, after: str | None, limit: int) -> ClusterPage:
    """One page of clusters for review: unconfirmed first, most doubtful first, then oldest;
    keyset-paged on that order so deep pages stay fast. Members come canonical first."""
    queryset = (
        DuplicateCluster.objects.filter(project=project)
        .order_by("confirmed", "-doubt", "id")
        .prefetch_related("members__image")
    )
    position = _cursor_parse(after)
    if position is not None:
        confirmed, doubt, pk = position
        queryset = queryset.filter(
            Q(confirmed__gt=confirmed)
            | Q(confirmed=confirmed, doubt__lt=doubt)
            | Q(confirmed=confirmed, doubt=doubt, id__gt=pk)
        )
    clusters = list(queryset[: limit + 1])
    has_more = len(clusters) > limit
    clusters = clusters[:limit]
    for cluster in clusters:
        cluster.ordered_members = sorted(
            (m.image for m in cluster.members.all()),
            key=lambda image, c=cluster: (image.pk != c.canonical_id, image.pk),
        )
    return ClusterPage(
        clusters=clusters,
        next_after=cluster_cursor(cluster=clusters[-1]) if has_more else None,
    )


def _cursor_parse(value: str | None) -> tuple[bool, int, int] | None:
    try:
        confirmed, doubt, pk = (int(part) for part in (value or "").split("."))
    except ValueError:
        return None
    return bool(confirmed), doubt, pk
