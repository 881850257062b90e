"""Near-duplicate images: perceptual hashes, pair search and clustering, without the ORM.

An image is reduced to two 64-bit perceptual hashes (pHash and dHash, as unsigned ints).
Two images are near-duplicates when their pHashes differ in at most ``threshold`` bits and,
as a cheap second opinion, their dHashes in at most ``DHASH_THRESHOLD_DEFAULT`` bits.

The pair search is an exact multi-index hash (Norouzi et al., "Fast Search in Hamming Space
with Multi-Index Hashing"): the 64 bits are split into blocks and, by the pigeonhole
principle, two hashes within ``threshold`` bits are within a small radius in at least one
block, so each block is a direct-address table probed at that radius and every candidate is
verified on all 64 bits. It returns exactly the pairs brute force returns, in time that grows
far below quadratic (``bench/dedup.py`` measures it against brute force and a BK-tree).

Pairs are grouped by union–find into clusters with one canonical image. Manager decisions are
plain data — pairs confirmed the same (must-link) and pairs split apart (cannot-link) — applied
on every recomputation, so they survive it.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import imagehash
import numpy as np
from PIL import Image, ImageOps

HASH_BITS = 64

# Chosen from bench/dedup.py (1,000 Flickr8k photos and six altered copies of each): 8 is the
# largest pHash threshold at which no two different photos pair up, and it already finds every
# resized, recompressed, brightness- and contrast-changed copy (cropped and bordered ones: 84%).
# At 10, crops and borders reach 95% but false pairs appear — a count that grows with the
# square of a project's size — and the search over 1,000,000 hashes takes about six times
# longer. pHash sets 32 of its 64 bits, so its distances are even: 8 also admits 9.
PHASH_THRESHOLD_DEFAULT = 8
# A second opinion for pairs the pHash search found. At pHash ≤ 10 it cuts the false pairs on
# Flickr8k from 45 to 6 (at 12, from 225 to 21) while costing under 1% of recall, so a
# project can loosen the pHash threshold without losing precision.
DHASH_THRESHOLD_DEFAULT = 20

# Decoding a JPEG at 1/2, 1/4 or 1/8 scale is several times faster than full decoding, and
# both hashes shrink the image to 32×32 or less anyway; 64 px keeps the downscale antialiased.
_DRAFT_SIZE = (64, 64)

# A direct-address table of 2**22 offsets is 32 MiB; wider blocks would need hashing.
_MAX_BLOCK_BITS = 22
# Probes (query × flip mask) handled per numpy round: bounds memory to a few dozen MiB.
_PROBE_CHUNK = 1 << 20
# Rough costs in nanoseconds, measured on the 2-core dev machine, used to choose between
# brute force and the block layouts (see _plan); only their ratios matter.
_COST_BRUTE_PAIR = 4.0
_COST_PROBE = 12.0
_COST_CANDIDATE = 12.0
_COST_TABLE_SLOT = 2.0
_COST_BLOCK = 2_000_000.0

ERROR_DUPLICATE_IDS = "Image ids must be unique."
ERROR_IDS_HASHES_LENGTH = "ids and hashes must have the same length."
ERROR_IDS_ALREADY_INDEXED = "Some ids are already in the index."
ERROR_THRESHOLD_RANGE = "The Hamming threshold must be between 0 and 64."


@dataclass(frozen=True)
class ImageHashes:
    """The perceptual hashes of one image, each a 64-bit unsigned int."""

    phash: int
    dhash: int


@dataclass(frozen=True, order=True)
class HashPair:
    """Two images whose hashes are within the threshold; ``a < b``."""

    a: int
    b: int
    distance: int


@dataclass(frozen=True)
class Cluster:
    """Near-duplicate images grouped together; ``members`` is sorted and holds ``canonical``.

    ``doubt`` is the largest Hamming distance between two members: a cluster of exact copies
    has 0; one chained through intermediate images can exceed the threshold. ``confirmed`` is
    true when manager must-links alone connect every member.
    """

    canonical: int
    members: tuple[int, ...]
    doubt: int
    confirmed: bool


@dataclass(frozen=True)
class Clustering:
    """Clusters ordered for manager review (unconfirmed first, most doubtful first).

    ``conflicts`` are cannot-links the must-links overrode (both ends ended up together).
    """

    clusters: tuple[Cluster, ...]
    conflicts: tuple[tuple[int, int], ...]

    def canonical_by_member(self) -> dict[int, int]:
        """Map each clustered image id to its cluster's canonical id."""
        return {m: c.canonical for c in self.clusters for m in c.members}


# --- hashing -------------------------------------------------------------------------------


def _hash_to_int(value: imagehash.ImageHash) -> int:
    # Same bit order as str(value), read as hex.
    return int.from_bytes(np.packbits(value.hash).tobytes(), "big")


def image_hashes(*, image: Image.Image) -> ImageHashes:
    """Compute pHash and dHash of a Pillow image as 64-bit unsigned ints."""
    grey = image.convert("L")
    return ImageHashes(
        phash=_hash_to_int(imagehash.phash(grey)), dhash=_hash_to_int(imagehash.dhash(grey))
    )


def image_hashes_from_file(*, file: str | os.PathLike[str] | BinaryIO) -> ImageHashes:
    """Open an image file and hash it the way stored images are always hashed.

    JPEGs are decoded at reduced scale in greyscale and EXIF orientation is applied, so a
    rotated-by-tag copy hashes like the upright original. Use this for every stored image:
    hashes of the same picture taken through different paths can differ by a bit or two.
    """
    with Image.open(file) as opened:
        opened.draft("L", _DRAFT_SIZE)
        upright = ImageOps.exif_transpose(opened)
        return image_hashes(image=upright)


def hamming_distance(*, a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def hash_to_signed(*, value: int) -> int:
    """Map an unsigned 64-bit hash onto a signed 64-bit int, for a BigIntegerField."""
    return value - (1 << HASH_BITS) if value >= 1 << (HASH_BITS - 1) else value


def hash_from_signed(*, value: int) -> int:
    """Inverse of ``hash_to_signed``."""
    return value & ((1 << HASH_BITS) - 1)


# --- pair search ---------------------------------------------------------------------------


def _as_hash_array(hashes: Sequence[int] | np.ndarray) -> np.ndarray:
    if isinstance(hashes, np.ndarray):
        if hashes.dtype == np.uint64:
            return hashes
        if hashes.dtype == np.int64:
            return hashes.view(np.uint64)
    return np.array(list(hashes), dtype=np.uint64).reshape(-1)


def _as_id_array(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64).reshape(-1)


def _check_inputs(ids: np.ndarray, hashes: np.ndarray, threshold: int) -> None:
    if len(ids) != len(hashes):
        raise ValueError(ERROR_IDS_HASHES_LENGTH)
    ordered = np.sort(ids)
    if (ordered[1:] == ordered[:-1]).any():
        raise ValueError(ERROR_DUPLICATE_IDS)
    if not 0 <= threshold <= HASH_BITS:
        raise ValueError(ERROR_THRESHOLD_RANGE)


def _to_pairs(ids_a: np.ndarray, ids_b: np.ndarray, distances: np.ndarray) -> tuple[HashPair, ...]:
    low = np.minimum(ids_a, ids_b)
    high = np.maximum(ids_a, ids_b)
    order = np.lexsort((high, low))
    return tuple(
        HashPair(a=a, b=b, distance=d)
        for a, b, d in zip(
            low[order].tolist(), high[order].tolist(), distances[order].tolist(), strict=True
        )
    )


def _brute_force_arrays(
    left: np.ndarray, right: np.ndarray, threshold: int, *, self_join: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index triples (i in left, j in right, distance) within the threshold."""
    found_i, found_j, found_d = [], [], []
    rows = max(1, _PROBE_CHUNK // max(1, len(right)))
    for start in range(0, len(left), rows):
        # In a self-join only the upper triangle is needed: row i against columns > i.
        col0 = start + 1 if self_join else 0
        block = left[start : start + rows]
        dist = np.bitwise_count(block[:, None] ^ right[None, col0:])
        i, j = np.nonzero(dist <= threshold)
        if self_join:
            keep = j + col0 > i + start
            i, j = i[keep], j[keep]
        found_i.append(i + start)
        found_j.append(j + col0)
        found_d.append(dist[i, j])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.uint8)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def brute_force_pairs(
    *, ids: Sequence[int] | np.ndarray, hashes: Sequence[int] | np.ndarray, threshold: int
) -> tuple[HashPair, ...]:
    """Every pair within ``threshold`` bits by comparing all pairs: the reference answer."""
    id_array, hash_array = _as_id_array(ids), _as_hash_array(hashes)
    _check_inputs(id_array, hash_array, threshold)
    i, j, d = _brute_force_arrays(hash_array, hash_array, threshold, self_join=True)
    return _to_pairs(id_array[i], id_array[j], d)


def _ball_size(bits: int, radius: int) -> int:
    return sum(math.comb(bits, k) for k in range(radius + 1))


@dataclass(frozen=True)
class _Layout:
    """Which bits form each block and the radius probed in it; empty means brute force."""

    blocks: tuple[tuple[int, ...], ...]
    radii: tuple[int, ...]


def _layout_cost(bits: Sequence[int], radii: Sequence[int], n: int) -> float:
    balls = [_ball_size(b, s) for b, s in zip(bits, radii, strict=True)]
    # A self-join probes each nonzero flip mask from one side only (see _self_join).
    probes = n * sum(1 + (v - 1) / 2 for v in balls)
    # Unordered pairs of random hashes that fall within a block's radius.
    candidates = n * (n - 1) / 2 * sum(v / 2**b for v, b in zip(balls, bits, strict=True))
    return (
        probes * _COST_PROBE
        + candidates * _COST_CANDIDATE
        + sum(2**b * _COST_TABLE_SLOT + _COST_BLOCK for b in bits)
    )


def _plan(n: int, threshold: int) -> _Layout:
    """Pick the cheapest exact layout for ``n`` hashes, brute force included."""
    best = _Layout(blocks=(), radii=())
    best_cost = n * (n - 1) / 2 * _COST_BRUTE_PAIR
    for count in range(1, min(threshold + 1, HASH_BITS) + 1):
        # Interleave bits across blocks (block k takes bits k, k+count, ...): neighbouring
        # pHash bits come from neighbouring DCT coefficients and are correlated, so contiguous
        # blocks would hold less entropy and fill buckets unevenly.
        blocks = tuple(tuple(range(k, HASH_BITS, count))[:_MAX_BLOCK_BITS] for k in range(count))
        bits = [len(b) for b in blocks]
        # Pigeonhole: if every block differed by more than its radius s_k, the total would be
        # at least sum(s_k + 1); so sum(s_k + 1) = threshold + 1 guarantees a hit somewhere.
        # Spread the radii evenly, larger ones on the wider blocks.
        base, extra = divmod(threshold + 1, count)
        order = sorted(range(count), key=lambda k: -bits[k])
        radii = [base - 1] * count
        for k in order[:extra]:
            radii[k] += 1
        if any(_ball_size(bits[k], radii[k]) > 200_000 for k in range(count)):
            continue
        cost = _layout_cost(bits, radii, n)
        if cost < best_cost:
            best, best_cost = _Layout(blocks=blocks, radii=tuple(radii)), cost
    return best


def _block_keys(hashes: np.ndarray, bit_positions: Sequence[int]) -> np.ndarray:
    keys = np.zeros(len(hashes), dtype=np.uint64)
    for k, bit in enumerate(bit_positions):
        keys |= ((hashes >> np.uint64(bit)) & np.uint64(1)) << np.uint64(k)
    # Index arrays of the platform's intp skip a conversion on every gather.
    return keys.astype(np.intp)


def _flip_masks(bits: int, radius: int) -> np.ndarray:
    masks = [
        sum(1 << b for b in combo)
        for k in range(radius + 1)
        for combo in itertools.combinations(range(bits), k)
    ]
    return np.array(masks, dtype=np.intp)


def _key_order(keys: np.ndarray) -> np.ndarray:
    """Indices that sort ``keys`` (block keys, under 2**22), ties by index."""
    # Sorting key and index packed into one int64 is an order of magnitude faster than a
    # stable argsort, and gives the same order.
    index_bits = max(1, (len(keys) - 1).bit_length())
    packed = np.sort((keys << index_bits) | np.arange(len(keys), dtype=np.intp))
    return packed & ((1 << index_bits) - 1)


@dataclass(frozen=True)
class _BlockTable:
    """Hashes bucketed by one block's key.

    Positions ``offsets[k]:offsets[k] + counts[k]`` of the sorted arrays hold key ``k``;
    ``order`` maps a sorted position back to the index of the hash in the input.
    """

    bit_positions: tuple[int, ...]
    masks: np.ndarray
    order: np.ndarray
    sorted_keys: np.ndarray
    sorted_hashes: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray


def _block_table(hashes: np.ndarray, bit_positions: tuple[int, ...], radius: int) -> _BlockTable:
    keys = _block_keys(hashes, bit_positions)
    counts = np.bincount(keys, minlength=1 << len(bit_positions))
    offsets = np.zeros(len(counts), dtype=np.intp)
    np.cumsum(counts[:-1], out=offsets[1:])
    # Most probes land on empty buckets; a byte-wide count array is the cheapest to gather.
    count_type = np.uint8 if counts.max(initial=0) < 256 else np.intp
    order = _key_order(keys)
    return _BlockTable(
        bit_positions=bit_positions,
        masks=_flip_masks(len(bit_positions), radius),
        order=order,
        sorted_keys=keys[order],
        sorted_hashes=hashes[order],
        counts=counts.astype(count_type),
        offsets=offsets,
    )


_Triples = tuple[np.ndarray, np.ndarray, np.ndarray]


def _empty_triples() -> _Triples:
    empty = np.zeros(0, dtype=np.intp)
    return empty, empty, np.zeros(0, dtype=np.uint8)


def _concat_triples(parts: Sequence[_Triples]) -> _Triples:
    if not parts:
        return _empty_triples()
    i, j, d = (np.concatenate(column) for column in zip(*parts, strict=True))
    return i, j, d


def _verify(
    table: _BlockTable,
    query_hashes: np.ndarray,
    queries: np.ndarray,
    begins: np.ndarray,
    counts: np.ndarray,
    threshold: int,
) -> list[_Triples]:
    """Check every (query, bucket member) candidate on all 64 bits; keep those within."""
    found = []
    single = counts == 1
    # Buckets are mostly single: check those directly and expand only the rest.
    batches = [(queries[single], begins[single])]
    many = np.flatnonzero(counts > 1)
    if len(many):
        many_counts = counts[many]
        ends = np.cumsum(many_counts)
        # Crowded buckets (many near-identical images) could expand without bound: cut the
        # expansion into batches of about _PROBE_CHUNK candidates.
        cuts = np.searchsorted(ends, np.arange(_PROBE_CHUNK, ends[-1], _PROBE_CHUNK))
        for part in np.split(np.arange(len(many)), np.unique(cuts)):
            if len(part) == 0:
                continue
            part_counts = many_counts[part]
            part_ends = np.cumsum(part_counts)
            offsets = np.arange(part_ends[-1], dtype=np.intp) - np.repeat(
                part_ends - part_counts, part_counts
            )
            batches.append(
                (
                    np.repeat(queries[many[part]], part_counts),
                    np.repeat(begins[many[part]], part_counts) + offsets,
                )
            )
    for cand_q, cand_t in batches:
        dist = np.bitwise_count(query_hashes[cand_q] ^ table.sorted_hashes[cand_t])
        ok = np.flatnonzero(dist <= threshold)
        found.append((cand_q[ok], cand_t[ok], dist[ok]))
    return found


def _probe(
    table: _BlockTable,
    query_keys: np.ndarray,
    query_hashes: np.ndarray,
    masks: np.ndarray,
    threshold: int,
    *,
    upper_only: bool = False,
) -> _Triples:
    """Verified (query index, sorted table position, distance) for keys at the given masks.

    ``upper_only`` (for a self-join whose queries are the table's own sorted entries) keeps
    a candidate only when its table position is after the query's, so each pair of one bucket
    is met once and nobody meets themself.
    """
    found: list[_Triples] = []
    size = len(query_keys)
    if size == 0:
        return _empty_triples()
    masks_per_round = max(1, _PROBE_CHUNK // size)
    for start in range(0, len(masks), masks_per_round):
        round_masks = masks[start : start + masks_per_round]
        if len(round_masks) == 1:
            probes = query_keys ^ round_masks[0]
        else:
            probes = (round_masks[:, None] ^ query_keys[None, :]).ravel()
        counts = table.counts[probes]
        hit = np.flatnonzero(counts != 0)
        if len(hit) == 0:
            continue
        counts = counts[hit].astype(np.intp)
        begins = table.offsets[probes[hit]]
        queries = hit if len(round_masks) == 1 else hit % size
        if upper_only:
            # A query's own bucket holds it at position ``queries``: take only what follows.
            counts = begins + counts - queries - 1
            begins = queries + 1
        found.extend(_verify(table, query_hashes, queries, begins, counts, threshold))
    return _concat_triples(found)


def _self_join(table: _BlockTable, threshold: int) -> _Triples:
    """Pairs of indexed hashes (input indices, low first) found through one block."""
    # Same bucket: one pass over everything, upper triangle only.
    found = [
        _probe(
            table,
            table.sorted_keys,
            table.sorted_hashes,
            table.masks[:1],
            threshold,
            upper_only=True,
        )
    ]
    # Buckets k and k ^ mask: the pair is met from both buckets; probe only from the one
    # with a 0 in the mask's highest bit, which halves the work.
    highest = np.zeros(len(table.masks), dtype=np.intp)
    for bit in range(len(table.bit_positions)):
        highest[(table.masks >> bit) & 1 == 1] = bit
    for bit in range(len(table.bit_positions)):
        masks = table.masks[1:][highest[1:] == bit]
        if len(masks) == 0:
            continue
        chosen = np.flatnonzero((table.sorted_keys >> bit) & 1 == 0)
        q, t, d = _probe(
            table, table.sorted_keys[chosen], table.sorted_hashes[chosen], masks, threshold
        )
        found.append((chosen[q], t, d))
    q, t, d = _concat_triples(found)
    a, b = table.order[q], table.order[t]
    return np.minimum(a, b), np.maximum(a, b), d


def _unique_triples(triples: _Triples, width: int) -> _Triples:
    # A pair close in several blocks is found once per block.
    i, j, d = triples
    _, first = np.unique(i * max(1, width) + j, return_index=True)
    return i[first], j[first], d[first]


class HammingIndex:
    """An immutable index of image hashes that finds every pair within a Hamming threshold.

    Build it once per project (``build``), list the pairs inside it (``pairs``), and when new
    images arrive call ``extend``: it returns the new index and only the new pairs, so new
    images join clusters without a project-wide search. ``query`` compares outside hashes
    (say, another project's test images) with the index without adding them.
    """

    __slots__ = ("_hashes", "_ids", "_layout", "_tables", "_threshold")

    def __init__(
        self, *, ids: np.ndarray, hashes: np.ndarray, threshold: int, layout: _Layout
    ) -> None:
        self._ids = ids
        self._hashes = hashes
        self._threshold = threshold
        self._layout = layout
        self._tables = tuple(
            _block_table(hashes, bits, radius)
            for bits, radius in zip(layout.blocks, layout.radii, strict=True)
        )

    @classmethod
    def build(
        cls,
        *,
        ids: Sequence[int] | np.ndarray,
        hashes: Sequence[int] | np.ndarray,
        threshold: int = PHASH_THRESHOLD_DEFAULT,
    ) -> HammingIndex:
        """Index ``hashes`` (64-bit unsigned) under their image ``ids``."""
        id_array, hash_array = _as_id_array(ids), _as_hash_array(hashes)
        _check_inputs(id_array, hash_array, threshold)
        return cls(
            ids=id_array,
            hashes=hash_array,
            threshold=threshold,
            layout=_plan(len(hash_array), threshold),
        )

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def threshold(self) -> int:
        """The Hamming threshold the index was built for (its blocks depend on it)."""
        return self._threshold

    @property
    def uses_brute_force(self) -> bool:
        """True when the index is small enough that comparing all pairs is cheapest."""
        return not self._tables

    def pairs(self) -> tuple[HashPair, ...]:
        """Every pair of indexed images within the threshold, sorted by ids."""
        if not self._tables:
            i, j, d = _brute_force_arrays(
                self._hashes, self._hashes, self.threshold, self_join=True
            )
        else:
            found = [_self_join(table, self.threshold) for table in self._tables]
            i, j, d = _unique_triples(_concat_triples(found), len(self._ids))
        return _to_pairs(self._ids[i], self._ids[j], d)

    def _cross(self, hashes: np.ndarray) -> _Triples:
        if not self._tables:
            return _brute_force_arrays(hashes, self._hashes, self.threshold, self_join=False)
        found = []
        for table in self._tables:
            keys = _block_keys(hashes, table.bit_positions)
            # Probing in key order keeps each mask's look-ups close together in memory.
            order = _key_order(keys)
            q, t, d = _probe(table, keys[order], hashes[order], table.masks, self.threshold)
            found.append((order[q], table.order[t], d))
        return _unique_triples(_concat_triples(found), len(self._ids))

    def query(
        self, *, ids: Sequence[int] | np.ndarray, hashes: Sequence[int] | np.ndarray
    ) -> tuple[HashPair, ...]:
        """Pairs between the given images and the indexed ones (not among the given ones)."""
        id_array, hash_array = _as_id_array(ids), _as_hash_array(hashes)
        _check_inputs(id_array, hash_array, self.threshold)
        q, t, d = self._cross(hash_array)
        return _to_pairs(id_array[q], self._ids[t], d)

    def extend(
        self, *, ids: Sequence[int] | np.ndarray, hashes: Sequence[int] | np.ndarray
    ) -> tuple[HammingIndex, tuple[HashPair, ...]]:
        """Add new images; return the grown index and the pairs that involve a new image."""
        id_array, hash_array = _as_id_array(ids), _as_hash_array(hashes)
        _check_inputs(id_array, hash_array, self.threshold)
        if np.isin(id_array, self._ids).any():
            raise ValueError(ERROR_IDS_ALREADY_INDEXED)
        cross = self.query(ids=id_array, hashes=hash_array)
        among_new = HammingIndex.build(
            ids=id_array, hashes=hash_array, threshold=self.threshold
        ).pairs()
        grown = HammingIndex.build(
            ids=np.concatenate([self._ids, id_array]),
            hashes=np.concatenate([self._hashes, hash_array]),
            threshold=self.threshold,
        )
        return grown, tuple(sorted(cross + among_new))


def near_duplicate_pairs(
    *,
    ids: Sequence[int] | np.ndarray,
    hashes: Sequence[int] | np.ndarray,
    threshold: int = PHASH_THRESHOLD_DEFAULT,
) -> tuple[HashPair, ...]:
    """Every pair of images whose hashes differ in at most ``threshold`` bits, sorted by ids."""
    return HammingIndex.build(ids=ids, hashes=hashes, threshold=threshold).pairs()


def pairs_confirm(
    *,
    pairs: Iterable[HashPair],
    hashes: Mapping[int, int],
    threshold: int = DHASH_THRESHOLD_DEFAULT,
) -> tuple[HashPair, ...]:
    """Keep the pairs whose second hash (dHash by id) also lies within ``threshold`` bits."""
    return tuple(p for p in pairs if (hashes[p.a] ^ hashes[p.b]).bit_count() <= threshold)


# --- clustering ----------------------------------------------------------------------------


def _ordered(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = parent.setdefault(x, x)
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> int:
        """Join the two sets; the smaller root id stays root, which keeps results stable."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        low, high = (ra, rb) if ra < rb else (rb, ra)
        self.parent[high] = low
        return low


def _diameter(values: np.ndarray) -> int:
    """Largest Hamming distance between two of the hashes, in row blocks to bound memory."""
    rows = max(1, _PROBE_CHUNK // len(values))
    return max(
        int(np.bitwise_count(values[start : start + rows, None] ^ values[None, :]).max())
        for start in range(0, len(values), rows)
    )


def clusters_build(
    *,
    pairs: Iterable[HashPair],
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    hashes: Mapping[int, int] | None = None,
    preferred: Collection[int] = (),
) -> Clustering:
    """Group near-duplicate pairs into clusters, honouring the manager's decisions.

    Must-links (confirmed the same) are joined first and always hold. Then the pairs are
    joined closest first (ties by ids), skipping any join that would put two images of a
    cannot-link (split apart) into one cluster. The result depends only on the sets of pairs
    and decisions, never on their order, so recomputing — or adding the pairs of new images —
    gives the same clusters. The canonical image is the lowest preferred id in the cluster,
    else the lowest id (the earliest upload). ``hashes`` (pHash by id) make the doubt the
    largest pairwise distance among members; without them it is the largest pair distance.
    """
    pair_list = sorted(set(pairs), key=lambda p: (p.distance, p.a, p.b))
    must = sorted({_ordered(a, b) for a, b in must_link if a != b})
    cannot = sorted({_ordered(a, b) for a, b in cannot_link if a != b})

    uf = _UnionFind()
    for a, b in must:
        uf.union(a, b)
    confirmed_roots = _UnionFind()
    for a, b in must:
        confirmed_roots.union(a, b)

    conflicts = tuple((a, b) for a, b in cannot if uf.find(a) == uf.find(b))
    # Cannot-links between components, kept per root and merged along with the components.
    barred: dict[int, set[int]] = {}
    for a, b in cannot:
        ra, rb = uf.find(a), uf.find(b)
        if ra != rb:
            barred.setdefault(ra, set()).add(b)
            barred.setdefault(rb, set()).add(a)

    for pair in pair_list:
        ra, rb = uf.find(pair.a), uf.find(pair.b)
        if ra == rb:
            continue
        if any(uf.find(x) == rb for x in barred.get(ra, ())):
            continue
        root = uf.union(ra, rb)
        merged = barred.pop(ra, set()) | barred.pop(rb, set())
        if merged:
            barred[root] = merged

    members_by_root: dict[int, list[int]] = {}
    for x in list(uf.parent):
        members_by_root.setdefault(uf.find(x), []).append(x)

    edge_doubt: dict[int, int] = {}
    if hashes is None:
        for pair in pair_list:
            root = uf.find(pair.a)
            if root == uf.find(pair.b):
                edge_doubt[root] = max(edge_doubt.get(root, 0), pair.distance)

    preferred_set = set(preferred)
    clusters = []
    for root, members in members_by_root.items():
        if len(members) < 2:
            continue
        members.sort()
        chosen = [m for m in members if m in preferred_set]
        canonical = chosen[0] if chosen else members[0]
        if hashes is not None:
            doubt = _diameter(np.array([hashes[m] for m in members], dtype=np.uint64))
        else:
            doubt = edge_doubt.get(root, 0)
        confirmed = len({confirmed_roots.find(m) for m in members}) == 1
        clusters.append(
            Cluster(canonical=canonical, members=tuple(members), doubt=doubt, confirmed=confirmed)
        )
    clusters.sort(key=lambda c: (c.confirmed, -c.doubt, -len(c.members), c.canonical))
    return Clustering(clusters=tuple(clusters), conflicts=conflicts)
