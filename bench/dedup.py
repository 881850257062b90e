"""Near-duplicate detection benchmark (issue 4): quality on Flickr8k, then speed.

Run from the repository root: ``python bench/dedup.py``. A few minutes on two cores.

1. Quality. Every one of the 1,000 Flickr8k images in shared/data gets six altered copies,
   made in memory and stored as JPEG files would be: resized to half, recompressed at quality
   40, cropped by 3% on each side, brightness ×0.75 or ×1.25, contrast ×0.75 or ×1.25, and a
   4-pixel black or white border. The 7,000 images are hashed as stored images are, searched
   for pairs, and the pairs scored per alteration, at the default thresholds and over a range.
2. Speed. Hashing throughput on the same files; then the time to find every pair within the
   default threshold among random 64-bit hashes with planted near-duplicates, for brute force,
   a BK-tree and the multi-index search, up to 1,000,000 hashes, checking that all three
   return the same pairs where they all run.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

# Run as a script from anywhere: the project root holds the datasets package.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets.curation.dedup import (
    DHASH_THRESHOLD_DEFAULT,
    PHASH_THRESHOLD_DEFAULT,
    HammingIndex,
    brute_force_pairs,
    clusters_build,
    image_hashes,
    image_hashes_from_file,
    near_duplicate_pairs,
    pairs_confirm,
)

IMAGES = ROOT.parent / "shared" / "data" / "flickr8k-1k" / "images"
WORKERS = 2
ALTERATIONS = ("resize", "recompress", "crop", "brightness", "contrast", "border")
GOALS = {"resize", "recompress", "brightness"}


# --- 1. quality ----------------------------------------------------------------------------


def _as_file(image: Image.Image, quality: int = 95) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return buffer


def _altered(image: Image.Image, name: str, rng: random.Random) -> io.BytesIO:
    width, height = image.size
    if name == "resize":
        return _as_file(image.resize((width // 2, height // 2), Image.Resampling.BICUBIC))
    if name == "recompress":
        return _as_file(image, quality=40)
    if name == "crop":
        dx, dy = round(width * 0.03), round(height * 0.03)
        return _as_file(image.crop((dx, dy, width - dx, height - dy)))
    if name == "brightness":
        return _as_file(ImageEnhance.Brightness(image).enhance(rng.choice((0.75, 1.25))))
    if name == "contrast":
        return _as_file(ImageEnhance.Contrast(image).enhance(rng.choice((0.75, 1.25))))
    if name == "border":
        colour = rng.choice(((0, 0, 0), (255, 255, 255)))
        return _as_file(ImageOps.expand(image, border=4, fill=colour))
    raise ValueError(name)


def _hash_family(path: Path) -> list[tuple[int, int]]:
    """(pHash, dHash) of the original file and of each altered copy, in ALTERATIONS order."""
    rng = random.Random(path.name)
    hashes = [image_hashes_from_file(file=path)]
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    hashes += [image_hashes_from_file(file=_altered(image, name, rng)) for name in ALTERATIONS]
    return [(h.phash, h.dhash) for h in hashes]


def _pair_histogram(
    phashes: np.ndarray, dhashes: np.ndarray, source: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """65×65 counts of (pHash distance, dHash distance) over same- and different-source pairs."""
    same = np.zeros(65 * 65, dtype=np.int64)
    different = np.zeros(65 * 65, dtype=np.int64)
    n = len(phashes)
    for start in range(0, n, 500):
        rows = slice(start, min(n, start + 500))
        dp = np.bitwise_count(phashes[rows, None] ^ phashes[None, :]).astype(np.int64)
        dd = np.bitwise_count(dhashes[rows, None] ^ dhashes[None, :]).astype(np.int64)
        upper = np.arange(start, rows.stop)[:, None] < np.arange(n)[None, :]
        equal = source[rows, None] == source[None, :]
        cell = dp * 65 + dd
        same += np.bincount(cell[upper & equal], minlength=65 * 65)
        different += np.bincount(cell[upper & ~equal], minlength=65 * 65)
    return same.reshape(65, 65), different.reshape(65, 65)


def quality() -> None:
    paths = sorted(IMAGES.glob("*.jpg"))
    print(f"== 1. Quality: {len(paths)} Flickr8k images + {len(ALTERATIONS)} altered copies each")
    with ProcessPoolExecutor(WORKERS) as pool:
        families = list(pool.map(_hash_family, paths, chunksize=20))
    copies = len(ALTERATIONS) + 1
    phashes = np.array([f[k][0] for k in range(copies) for f in families], dtype=np.uint64)
    dhashes = np.array([f[k][1] for k in range(copies) for f in families], dtype=np.uint64)
    source = np.tile(np.arange(len(paths)), copies)
    kind = np.repeat(np.arange(copies), len(paths))  # 0 = original, k = ALTERATIONS[k - 1]
    ids = np.arange(len(phashes))

    pairs = near_duplicate_pairs(ids=ids, hashes=phashes, threshold=PHASH_THRESHOLD_DEFAULT)
    pairs = pairs_confirm(
        pairs=pairs,
        hashes=dict(enumerate(dhashes.tolist())),
        threshold=DHASH_THRESHOLD_DEFAULT,
    )
    a = np.array([p.a for p in pairs], dtype=np.int64)
    b = np.array([p.b for p in pairs], dtype=np.int64)
    true = source[a] == source[b]

    print(
        f"default: pHash ≤ {PHASH_THRESHOLD_DEFAULT} and dHash ≤ {DHASH_THRESHOLD_DEFAULT}; "
        f"{len(pairs)} pairs found among {len(ids)} images"
    )
    print(f"{'alteration':<12} {'recall':>7} {'precision':>9}  (recall: original–copy pairs)")
    for k, name in enumerate(ALTERATIONS, start=1):
        involved = (kind[a] == k) | (kind[b] == k)
        to_original = ((kind[a] == 0) & (kind[b] == k)) | ((kind[a] == k) & (kind[b] == 0))
        recall = (to_original & true).sum() / len(paths)
        precision = true[involved].mean() if involved.any() else 1.0
        goal = "  goal ≥ 0.95" if name in GOALS else ""
        print(f"{name:<12} {recall:7.3f} {precision:9.4f}{goal}")
    all_true = len(paths) * copies * (copies - 1) // 2
    distinct = ((kind[a] == 0) & (kind[b] == 0)).sum()
    print(
        f"{'all pairs':<12} {true.sum() / all_true:7.3f} {true.mean():9.4f}"
        f"  ({(~true).sum()} false pairs; {distinct} between two distinct originals)"
    )

    same, different = _pair_histogram(phashes, dhashes, source)
    originals = np.arange(len(paths))
    per_kind = [
        (
            np.bitwise_count(phashes[originals] ^ phashes[originals + k * len(paths)]),
            np.bitwise_count(dhashes[originals] ^ dhashes[originals + k * len(paths)]),
        )
        for k in range(1, copies)
    ]
    print("\nrecall per alteration and precision over all pairs, by threshold")
    header = " ".join(f"{name[:10]:>10}" for name in ALTERATIONS)
    print(f"{'pHash≤':>6} {'dHash≤':>6} {header} {'precision':>9} {'false':>6}")
    for dhash_limit in (64, DHASH_THRESHOLD_DEFAULT):
        for limit in range(4, 15, 2):
            recalls = " ".join(
                f"{((dp <= limit) & (dd <= dhash_limit)).mean():10.3f}" for dp, dd in per_kind
            )
            tp = same[: limit + 1, : dhash_limit + 1].sum()
            fp = different[: limit + 1, : dhash_limit + 1].sum()
            mark = (
                " ← default"
                if (limit, dhash_limit)
                == (
                    PHASH_THRESHOLD_DEFAULT,
                    DHASH_THRESHOLD_DEFAULT,
                )
                else ""
            )
            shown = "—" if dhash_limit == 64 else str(dhash_limit)
            print(f"{limit:6d} {shown:>6} {recalls} {tp / (tp + fp):9.4f} {fp:6d}{mark}")
    print("(pHash sets 32 of its 64 bits, so its distances are even: a threshold of 8 admits 9.)")


# --- 2. speed ------------------------------------------------------------------------------


def _hash_plain(path: Path) -> tuple[int, int]:
    with Image.open(path) as opened:
        hashes = image_hashes(image=opened)
    return hashes.phash, hashes.dhash


def _hash_stored(path: Path) -> tuple[int, int]:
    hashes = image_hashes_from_file(file=path)
    return hashes.phash, hashes.dhash


def hashing_speed() -> None:
    paths = sorted(IMAGES.glob("*.jpg"))
    with Image.open(paths[0]) as first:
        size = "×".join(map(str, first.size))
    print(f"\n== 2a. Hashing throughput: {len(paths)} JPEGs of {size} read 3 times, pHash + dHash")
    runs: list[tuple[str, Callable[[Path], tuple[int, int]], int]] = [
        ("full decode, 1 process", _hash_plain, 1),
        ("draft decode, 1 process", _hash_stored, 1),
        (f"draft decode, {WORKERS} processes", _hash_stored, WORKERS),
    ]
    passes = 3  # long enough for the process pool's start-up not to dominate
    for label, function, workers in runs:
        start = time.perf_counter()
        if workers == 1:
            for path in paths * passes:
                function(path)
        else:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(function, paths * passes, chunksize=50))
        rate = passes * len(paths) / (time.perf_counter() - start)
        print(f"{label:<28} {rate:7.0f} images/s   (goal ≥ 150)")


def _planted_hashes(n: int, threshold: int, seed: int) -> np.ndarray:
    """Random hashes; 1% overwritten by copies of others flipped 0..threshold bits, 0.1%
    by copies of copies (chains of three)."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    pairs, chains = n // 100, n // 1000
    slots = rng.permutation(n)[: 2 * pairs + 3 * chains]

    def flipped(values: np.ndarray, bits: np.ndarray) -> np.ndarray:
        # For each value, flip its own random choice of `bits` positions.
        order = np.argsort(rng.random((len(values), 64)), axis=1)
        chosen = np.arange(64)[None, :] < bits[:, None]
        masks = np.where(chosen, np.uint64(1) << order.astype(np.uint64), np.uint64(0))
        return values ^ np.bitwise_or.reduce(masks, axis=1)

    src, dst = slots[:pairs], slots[pairs : 2 * pairs]
    hashes[dst] = flipped(hashes[src], rng.integers(0, threshold + 1, size=pairs))
    c0, c1, c2 = slots[2 * pairs :].reshape(3, chains)
    hashes[c1] = flipped(hashes[c0], rng.integers(0, threshold + 1, size=chains))
    hashes[c2] = flipped(hashes[c1], rng.integers(0, threshold + 1, size=chains))
    return hashes


class _BKTree:
    """A plain Burkhard–Keller tree: nodes are (hash, id, {distance: child})."""

    def __init__(self) -> None:
        self.root: tuple[int, int, dict] | None = None

    def add(self, value: int, ident: int) -> None:
        if self.root is None:
            self.root = (value, ident, {})
            return
        node = self.root
        while True:
            distance = (value ^ node[0]).bit_count()
            child = node[2].get(distance)
            if child is None:
                node[2][distance] = (value, ident, {})
                return
            node = child

    def search(self, value: int, radius: int) -> list[tuple[int, int]]:
        found, stack = [], [self.root] if self.root else []
        while stack:
            node_value, ident, children = stack.pop()
            distance = (value ^ node_value).bit_count()
            if distance <= radius:
                found.append((ident, distance))
            # Triangle inequality: only subtrees at edge distance d ± radius can hold a match.
            low, high = distance - radius, distance + radius
            for edge, child in children.items():
                if low <= edge <= high:
                    stack.append(child)
        return found


def _bk_tree_pairs(hashes: np.ndarray, threshold: int) -> set[tuple[int, int, int]]:
    tree, pairs = _BKTree(), set()
    for ident, value in enumerate(hashes.tolist()):
        # Query before adding, so each pair is met once, from its later member.
        pairs.update((other, ident, d) for other, d in tree.search(value, threshold))
        tree.add(value, ident)
    return pairs


def _timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def search_speed() -> None:
    threshold = PHASH_THRESHOLD_DEFAULT
    print(
        f"\n== 2b. All pairs within {threshold} bits among random 64-bit hashes "
        "(1% planted near copies, 0.1% chains of three), one process"
    )
    print(
        f"{'hashes':>9} {'pairs':>7} {'brute force':>12} {'BK-tree':>9} {'multi-index':>12}  check"
    )
    brute_seconds: dict[int, float] = {}
    for n in (2_000, 5_000, 10_000, 20_000, 50_000, 200_000, 1_000_000):
        hashes = _planted_hashes(n, threshold, seed=n)
        ids = np.arange(n)
        fast_time, fast = _timed(
            lambda h=hashes, i=ids: HammingIndex.build(ids=i, hashes=h, threshold=threshold).pairs()
        )
        fast_set = {(p.a, p.b, p.distance) for p in fast}
        cells, checks = ["", ""], []
        if n <= 50_000:
            brute_time, brute = _timed(
                lambda h=hashes, i=ids: brute_force_pairs(ids=i, hashes=h, threshold=threshold)
            )
            brute_seconds[n] = brute_time
            cells[0] = f"{brute_time:11.2f}s"
            checks.append("= brute" if brute == fast else "≠ BRUTE FORCE")
        else:
            # Brute force is quadratic: scale the largest measured run.
            largest = max(brute_seconds)
            estimate = brute_seconds[largest] * (n / largest) ** 2
            cells[0] = f"~{estimate:10.0f}s"
        if n <= 5_000:
            bk_time, bk = _timed(lambda h=hashes: _bk_tree_pairs(h, threshold))
            cells[1] = f"{bk_time:8.2f}s"
            checks.append("= BK-tree" if bk == fast_set else "≠ BK-TREE")
        goal = "  (goal < 60 s)" if n == 1_000_000 else ""
        print(
            f"{n:9,d} {len(fast):7,d} {cells[0]:>12} {cells[1]:>9} {fast_time:11.2f}s  "
            f"{' '.join(checks)}{goal}"
        )
    print("(~: brute force extrapolated quadratically from 50,000)")
    for limit in (threshold, threshold + 2):
        hashes = _planted_hashes(200_000, limit, seed=limit)
        seconds, _ = _timed(
            lambda h=hashes, t=limit: HammingIndex.build(
                ids=np.arange(len(h)), hashes=h, threshold=t
            ).pairs()
        )
        print(f"threshold {limit:2d}, 200,000 hashes: multi-index {seconds:6.2f}s")

    print("\n== 2c. Incremental: new images against an index of 1,000,000")
    hashes = _planted_hashes(1_001_000, threshold, seed=7)
    ids = np.arange(len(hashes))
    build_time, index = _timed(
        lambda: HammingIndex.build(ids=ids[:1_000_000], hashes=hashes[:1_000_000])
    )
    print(f"build index of 1,000,000             {build_time:7.2f}s")
    query_time, _ = _timed(
        lambda: index.query(ids=ids[1_000_000:1_000_001], hashes=hashes[1_000_000:1_000_001])
    )
    print(f"pairs for 1 new image (query)        {query_time * 1000:7.1f}ms")
    extend_time, (_, new_pairs) = _timed(
        lambda: index.extend(ids=ids[1_000_000:], hashes=hashes[1_000_000:])
    )
    print(f"extend by 1,000 (pairs + new index)  {extend_time:7.2f}s   {len(new_pairs)} new pairs")
    all_pairs = index.pairs() + new_pairs
    cluster_time, clustering = _timed(lambda: clusters_build(pairs=all_pairs))
    print(
        f"cluster {len(all_pairs):,} pairs (union–find)     {cluster_time:7.2f}s   "
        f"{len(clustering.clusters):,} clusters"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    # The machine may be shared: the load average tells how much the figures can be trusted.
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPU cores, load average {load}; numpy {np.__version__}")
    total = time.perf_counter()
    quality()
    hashing_speed()
    search_speed()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - total:.0f}s; load average at the end {load}")


if __name__ == "__main__":
    main()
