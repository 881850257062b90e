"""Hard-negative mining benchmark (issue 8): the time to mine 100,000 images x 500,000 captions.

    .venv/bin/python bench/mining.py [--images N] [--captions M] [--dim D ...] [--k K]
                                     [--margin X] [--screen bfloat16|float32] [--threads T]
                                     [--image-block B] [--caption-chunk C] [--skip-timing]
                                     [--skip-ablation] [--data DIR]

Then the ablation of bench/mining_ablation.py on flickr8k-1k (see its docstring).

Random embeddings, seeded: L2-normalised images, 2% of them near-copies of another image (same
duplicate group); captions spread evenly over the images (5 each by default), each near its image
(cosine about 0.5, so own positives score well above the rest, as with a trained model); text
groups drawn at random from 0.9 M ids (M captions), so that about two thirds of the captions
share their text group with another caption (more than real data: it loads the text
exclusion). Each dimension runs in a fresh process, so its peak RSS is its own (embeddings,
the bf16 copy and the search together). The timing needs no Django.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from anywhere: the repository root holds the project's packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from training.core.mining import CAPTION_CHUNK_DEFAULT, IMAGE_BLOCK_DEFAULT, mine_hard_negatives

SEED = 0
DUPLICATE_SHARE = 0.02
# Caption rows generated at a time: the noise temporaries stay small next to the 1 GB matrix.
GENERATE_ROWS = 50_000


@dataclass(frozen=True)
class Problem:
    image_emb: np.ndarray
    caption_emb: np.ndarray
    caption_image: np.ndarray
    image_group: np.ndarray
    caption_text_group: np.ndarray


def _normalise(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def make_problem(images: int, captions: int, dim: int, *, seed: int = SEED) -> Problem:
    rng = np.random.default_rng(seed)
    image_emb = _normalise(rng.standard_normal((images, dim), dtype=np.float32))
    image_group = np.arange(images, dtype=np.int64)
    copies = rng.choice(images, int(images * DUPLICATE_SHARE), replace=False)
    originals = np.setdiff1d(np.arange(images), copies)
    originals = originals[rng.integers(0, len(originals), len(copies))]
    image_group[copies] = originals
    noise = rng.standard_normal((len(copies), dim), dtype=np.float32) * np.float32(0.5 / dim**0.5)
    image_emb[copies] = _normalise(image_emb[originals] + noise)

    caption_image = (np.arange(captions, dtype=np.int64) * images) // captions
    caption_emb = np.empty((captions, dim), dtype=np.float32)
    # Noise of norm sqrt(3) around a unit vector: cosine 1/sqrt(1 + 3) = 0.5 with the image.
    scale = np.float32((3 / dim) ** 0.5)
    for start in range(0, captions, GENERATE_ROWS):
        rows = slice(start, start + GENERATE_ROWS)
        part = rng.standard_normal((len(caption_image[rows]), dim), dtype=np.float32) * scale
        caption_emb[rows] = _normalise(part + image_emb[caption_image[rows]])
    caption_text_group = rng.integers(0, int(captions * 0.9), captions).astype(np.int64)
    return Problem(image_emb, caption_emb, caption_image, image_group, caption_text_group)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB


def time_one(
    images: int,
    captions: int,
    dim: int,
    k: int,
    margin: float,
    screen: str,
    image_block: int,
    caption_chunk: int,
    threads: int | None,
) -> str:
    """Build the problem and mine it; returns the figures as one line (run in a child process)."""
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    problem = make_problem(images, captions, dim)
    setup = time.perf_counter() - started
    data_rss = _peak_rss_gib()
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        # A heartbeat every ~minute, so a long run shows it is alive.
        if time.perf_counter() - last[0] > 60:
            last[0] = time.perf_counter()
            print(f"  d={dim}: {done}/{total} images", flush=True)

    started = time.perf_counter()
    mined = mine_hard_negatives(
        image_emb=problem.image_emb,
        caption_emb=problem.caption_emb,
        caption_image=problem.caption_image,
        image_group=problem.image_group,
        caption_text_group=problem.caption_text_group,
        k=k,
        margin=margin,
        screen=screen,  # type: ignore[arg-type]
        image_block=image_block,
        caption_chunk=caption_chunk,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    per_image = np.bincount(mined.image_index, minlength=images)
    return (
        f"d={dim:<4} {images} images x {captions} captions, k={k}, {screen} screen: "
        f"{seconds:7.1f} s  {images / seconds:7.0f} images/s  "
        f"peak RSS {_peak_rss_gib():.2f} GiB (data alone {data_rss:.2f} GiB)  "
        f"rechecked {mined.rechecked} images ({mined.rechecked / images:.1%})  "
        f"{len(mined)} proposals, {np.sum(per_image < k)} images with fewer than k  "
        f"[data setup {setup:.1f} s, {torch.get_num_threads()} threads]"
    )


def timing(args: argparse.Namespace) -> None:
    print(
        f"== Mining time: {args.images} images x {args.captions} captions, "
        f"image_block={args.image_block}, caption_chunk={args.caption_chunk}",
        flush=True,
    )
    # A fresh process per dimension: its peak RSS is its own and memory is returned between runs.
    context = multiprocessing.get_context("spawn")
    for dim in args.dim:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            line = pool.submit(
                time_one,
                args.images,
                args.captions,
                dim,
                args.k,
                args.margin,
                args.screen,
                args.image_block,
                args.caption_chunk,
                args.threads,
            ).result()
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--captions", type=int, default=500_000)
    parser.add_argument("--dim", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--margin", type=float, default=0.1)
    parser.add_argument("--screen", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--image-block", type=int, default=IMAGE_BLOCK_DEFAULT)
    parser.add_argument("--caption-chunk", type=int, default=CAPTION_CHUNK_DEFAULT)
    # On a machine shared with other busy processes, one thread can beat two (OpenMP threads wait
    # on each other at every barrier); the default is torch's, all cores.
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--skip-timing", action="store_true", help="skip the timing section")
    parser.add_argument(
        "--skip-ablation", action="store_true", help="skip the flickr8k-1k ablation section"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/data/flickr8k-1k",
        help="flickr8k-1k folder (captions.csv, images/) for the ablation",
    )
    args = parser.parse_args()
    if not args.skip_timing:
        timing(args)
    if not args.skip_ablation:
        from bench.mining_ablation import ablation

        print("\nablation: verified hard negatives against random negatives only", flush=True)
        ablation(data=args.data)


if __name__ == "__main__":
    main()
