"""Benchmark: every release writer on 1,000,000 synthetic pairs, without the database.

    python bench/release_formats.py [--rows N] [--webdataset-rows N] [--traced-rows N] [--keep DIR]

Rows come from a generator (never a list), 5 pairs per image, ordered by (split, image_id,
pair_id) like the release service's query. Each step runs in a fresh Python process, so its
maximum resident set size is its own (interpreter and imports included, about what a Celery
worker starts with). A second process reruns it under tracemalloc for the peak of Python
allocations, on fewer rows because tracing slows Python several times: the writers hold at
most a row group, so the peak does not grow with the row count (compare --traced-rows values).
Arrow's buffers are outside tracemalloc: the "arrow" column is the Arrow memory pool's peak.
"generate rows" times the generator alone; a writer's own cost is its time minus that.

Goal for the full release: JSONL + Parquet (with the database reads) under 120 s and 500 MB
on the 2-core machine, so the writers must leave most of both to the queries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

# Run as a script from anywhere: the repository root holds the project's packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa

from datasets.releases.balance import BalanceTally, LabelCounts, apply_balance, plan_balance
from datasets.releases.datasheet import CompositionTally
from datasets.releases.diff import read_pair_states, write_diff
from datasets.releases.exporters import (
    PAIRS_PARQUET,
    CocoSink,
    CsvSink,
    JsonlSink,
    ParquetSink,
    WebDatasetSink,
    export_rows,
    write_manifest,
)

MiB = 1024 * 1024
PAIRS_PER_IMAGE = 5
KINDS = ("positive", "positive", "random_negative", "hard_negative", "text_edit_negative")
SOURCES = ("import", "crowd", "construction", "crowd", "crowd")
LICENCES = (
    ("CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/"),
    ("CC BY-SA 4.0", "https://creativecommons.org/licenses/by-sa/4.0/"),
    ("CC0 1.0", "https://creativecommons.org/publicdomain/zero/1.0/"),
)
WORDS = ("a", "man", "dog", "cat", "red", "bicycle", "on", "the", "street", "beach", "with", "two")
FAKE_IMAGE = bytes(range(256)) * 8  # 2 KiB stands in for a JPEG


def synthetic_rows(*, rows: int, seed: int = 0) -> Iterator[dict[str, object]]:
    """``rows`` release rows, generated one at a time in the service's order.

    Captions and confidences are drawn from small pre-generated pools so that generating a
    row costs little next to writing it.
    """
    rng = random.Random(seed)
    captions = [" ".join(rng.choices(WORDS, k=rng.randint(6, 14))) for _ in range(4096)]
    confidences = [round(rng.uniform(0.5, 1.0), 4) for _ in range(1024)]
    images = -(-rows // PAIRS_PER_IMAGE)
    # Image i sits in train for i % 10 < 7, val for 7, test for 8–9: the default ratios.
    for split, residues in (("test", (8, 9)), ("train", range(7)), ("val", (7,))):
        for base in range(0, images, 10):
            for residue in residues:
                image_id = base + residue
                sha = f"{image_id * 2654435761 % 2**64:016x}" * 4
                path = f"images/{sha[:2]}/{sha}.jpg"
                licence, url = LICENCES[image_id % 3]
                cluster_id = image_id - image_id % 2 if residue < 7 else image_id
                source_url = f"https://example.org/photos/{image_id}"
                original_name = f"IMG_{image_id:07d}.jpg"
                for k in range(PAIRS_PER_IMAGE):
                    pair_id = image_id * PAIRS_PER_IMAGE + k
                    if pair_id >= rows:
                        break
                    yield {
                        "pair_id": pair_id,
                        "image_id": image_id,
                        "caption_id": pair_id * 7 + 3,
                        "image_path": path,
                        "image_sha256": sha,
                        "caption": captions[pair_id * 2654435761 % 4096],
                        "kind": KINDS[k],
                        "label": 1 if k < 2 else int(pair_id % 10 == 3),
                        "label_source": SOURCES[k],
                        "confidence": confidences[pair_id % 1024],
                        "n_judgments": 0 if k in (0, 2) else 3,
                        "split": split,
                        "cluster_id": cluster_id,
                        "weight": 1.0,
                        "license": licence,
                        "width": 640,
                        "height": 480,
                        "license_url": url,
                        "source_url": source_url,
                        "original_name": original_name,
                    }


def consume(rows: Iterator[dict[str, object]]) -> int:
    count = 0
    for _row in rows:
        count += 1
    return count


def _release_pass(out: Path, n: int) -> None:
    # What the release task does in its one pass: balance, count, and every table format.
    plan = plan_balance(
        train=LabelCounts(positives=2 * n // 5, negatives=3 * n // 5),
        target_ratio=1.0,
        method="undersample",
        seed=1,
    )
    directory = out / "release"
    export_rows(
        rows=apply_balance(rows=synthetic_rows(rows=n), plan=plan, tally=BalanceTally()),
        sinks=[
            JsonlSink(directory / "pairs.jsonl"),
            CsvSink(directory / "pairs.csv"),
            ParquetSink(directory / PAIRS_PARQUET),
            CocoSink(directory, info={"version": "bench"}),
            CompositionTally(),
        ],
    )


def _diff(out: Path, n: int) -> None:
    parquet = out / "parquet" / PAIRS_PARQUET
    # The "new" release flips one label in 97 and drops one pair in 101.
    new = (
        s._replace(label=1 - s.label) if s.pair_id % 97 == 0 else s
        for s in read_pair_states(path=parquet)
        if s.pair_id % 101
    )
    write_diff(path=out / "diff.jsonl", old=read_pair_states(path=parquet), new=new)


# name -> (label, step(out, rows)); run in this order, each in its own process.
STEPS: dict[str, tuple[str, Callable[[Path, int], object]]] = {
    "rows": ("generate rows (baseline)", lambda out, n: consume(synthetic_rows(rows=n))),
    "jsonl": (
        "jsonl",
        lambda out, n: export_rows(
            rows=synthetic_rows(rows=n), sinks=[JsonlSink(out / "jsonl" / "pairs.jsonl")]
        ),
    ),
    "parquet": (
        "parquet",
        lambda out, n: export_rows(
            rows=synthetic_rows(rows=n), sinks=[ParquetSink(out / "parquet" / PAIRS_PARQUET)]
        ),
    ),
    "csv": (
        "csv",
        lambda out, n: export_rows(
            rows=synthetic_rows(rows=n), sinks=[CsvSink(out / "csv" / "pairs.csv")]
        ),
    ),
    "coco": (
        "coco (3 splits)",
        lambda out, n: export_rows(
            rows=synthetic_rows(rows=n), sinks=[CocoSink(out / "coco", info={"version": "bench"})]
        ),
    ),
    "webdataset": (
        "webdataset (2 KiB images)",
        lambda out, n: export_rows(
            rows=synthetic_rows(rows=n),
            sinks=[
                WebDatasetSink(
                    out / "webdataset", read_image=lambda row: FAKE_IMAGE, max_samples=5_000
                )
            ],
        ),
    ),
    "jsonl+parquet": (
        "jsonl + parquet, one pass",
        lambda out, n: export_rows(
            rows=synthetic_rows(rows=n),
            sinks=[
                JsonlSink(out / "both" / "pairs.jsonl"),
                ParquetSink(out / "both" / PAIRS_PARQUET),
            ],
        ),
    ),
    "release": ("balance+jsonl+csv+parquet+coco+stats", _release_pass),
    "manifest": (
        "manifest of that release",
        lambda out, n: write_manifest(directory=out / "release"),
    ),
    "diff": ("diff vs previous (parquet merge)", _diff),
}


def run_step(name: str, out: Path, rows: int, traced: bool) -> None:
    """Child process: run one step, print its figures as one JSON line."""
    _label, step = STEPS[name]
    if traced:
        # pyarrow imports pandas on its first conversion; count data, not that import.
        pa.array([0])
        tracemalloc.start()
    started = time.perf_counter()
    cpu = time.process_time()
    step(out, rows)
    result = {
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
        "arrow": pa.default_memory_pool().max_memory() or 0,
        "traced": tracemalloc.get_traced_memory()[1] if traced else 0,
    }
    print(json.dumps(result))


def spawn(name: str, out: Path, rows: int, *, traced: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--step", name, "--rows", str(rows), "--out", str(out)]
    if traced:
        command.append("--traced")
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def size_of(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MiB
    return path.stat().st_size / MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--webdataset-rows", type=int, default=100_000)
    parser.add_argument(
        "--traced-rows",
        type=int,
        default=100_000,
        help="rows for the tracemalloc reruns (tracing slows Python several times); 0 skips them",
    )
    parser.add_argument("--keep", type=Path, help="write into this folder and keep the files")
    parser.add_argument("--step", choices=list(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.step:
        run_step(options.step, options.out, options.rows, options.traced)
        return

    n, traced_n = options.rows, options.traced_rows
    out = options.keep or Path(tempfile.mkdtemp(prefix="concord-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    traced_out = Path(tempfile.mkdtemp(prefix="concord-bench-traced-"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{n:,} rows ({-(-n // PAIRS_PER_IMAGE):,} images, {PAIRS_PER_IMAGE} pairs each), "
        f"{os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}, "
        f"pyarrow {pa.__version__}"
    )
    print(
        "each step in a fresh process; RSS = its max resident set (interpreter and imports "
        "included); arrow = Arrow pool peak;"
    )
    if traced_n:
        print(f"traced = tracemalloc peak of Python allocations, rerun on {traced_n:,} rows")
    header = (
        f"{'step':<38}{'rows':>10}{'wall s':>8}{'cpu s':>8}{'rows/s':>10}{'RSS MiB':>9}{'arrow':>7}"
    )
    print(header + (f"{'traced':>8}" if traced_n else ""))
    for name, (label, _step) in STEPS.items():
        rows = options.webdataset_rows if name == "webdataset" else n
        figures = spawn(name, out, rows, traced=False)
        line = (
            f"{label:<38}{rows:>10,}{figures['seconds']:>8.1f}{figures['cpu']:>8.1f}"
            f"{rows / figures['seconds']:>10,.0f}{figures['rss'] / MiB:>9.0f}"
            f"{figures['arrow'] / MiB:>7.0f}"
        )
        if traced_n:
            traced_rows = min(rows, traced_n)
            peak = spawn(name, traced_out, traced_rows, traced=True)["traced"]
            line += f"{peak / MiB:>8.1f}"
        print(line, flush=True)
    print()
    for name in (
        "jsonl/pairs.jsonl",
        "parquet/pairs.parquet",
        "csv/pairs.csv",
        "coco",
        "webdataset",
    ):
        print(f"{name:<38}{size_of(out / name):>10,.1f} MiB")
    shutil.rmtree(traced_out)
    if options.keep is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
