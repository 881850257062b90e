"""Benchmark: aggregation and agreement over 1,000,000 judgments, 300,000 items, 500 annotators.

    python bench/agreement.py [--seed S] [--resamples N] [--crowdkit]

Synthesises a seeded crowd (20% spammers) with annotate.simulation.crowd, then times each step
and measures its peak memory. Each step runs twice: once for the wall time, once under
tracemalloc for the peak of what the step itself allocates (numpy and pandas buffers
included). The process's maximum resident set size at the end bounds everything together.
Goal: under 30 s and under 2 GB per step on a 2-core machine. ``--crowdkit`` also times
crowd-kit's own DawidSkene on the same data, for comparison (slow).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Run as a script from the repository root: make the project's packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotate.agreement.aggregation import dawid_skene, encode_judgments, majority_vote
from annotate.agreement.annotators import annotator_stats
from annotate.agreement.coefficients import (
    cohen_kappa_matrix,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_interval,
    percent_agreement,
)
from annotate.simulation.crowd import (
    CrowdSpec,
    score_labels,
    simulate_annotators,
    simulate_judgments,
    simulate_truth,
)

ITEMS = 300_000
ANNOTATORS = 500
JUDGMENTS = 1_000_000
TARGET = 3
MiB = 1024 * 1024


def measure(name: str, step: Callable[[], object], *, peak: bool = True) -> object:
    """Run ``step`` for its wall time, then again under tracemalloc for its peak memory."""
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    peak_text = ""
    if peak:
        tracemalloc.start()
        step()
        _, peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak_text = f"{peak_bytes / MiB:9.0f} MiB peak"
    print(f"{name:<34}{seconds:8.2f} s {peak_text}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--crowdkit", action="store_true", help="also time crowd-kit's DawidSkene")
    options = parser.parse_args()

    print(f"{JUDGMENTS:,} judgments, {ITEMS:,} items, {ANNOTATORS} annotators, seed {options.seed}")
    crowd = simulate_annotators(
        spec=CrowdSpec(annotators=ANNOTATORS, spammer_fraction=0.2), seed=options.seed
    )
    truth = simulate_truth(items=ITEMS, seed=options.seed)
    # Every item gets the target 3 judgments; a third of them were disputed and got a 4th.
    per_item = np.full(ITEMS, TARGET)
    per_item[: JUDGMENTS - TARGET * ITEMS] += 1
    judgments = measure(
        "simulate judgments",
        lambda: simulate_judgments(
            truth=truth, crowd=crowd, judgments_per_item=per_item, seed=options.seed
        ),
        peak=False,
    )
    assert len(judgments) == JUDGMENTS

    measure("encode judgments", lambda: encode_judgments(judgments=judgments))
    by_vote = measure(
        "majority vote",
        lambda: majority_vote(
            judgments=judgments, target_judgments=TARGET, agreement_threshold=0.7
        ),
    )
    by_model = measure(
        "Dawid-Skene (numpy EM)",
        lambda: dawid_skene(judgments=judgments, target_judgments=TARGET, agreement_threshold=0.9),
    )
    measure(
        "Dawid-Skene, forced 100 iterations",
        # The worst case: EM that never meets the tolerance runs all max_iterations.
        lambda: dawid_skene(
            judgments=judgments,
            target_judgments=TARGET,
            agreement_threshold=0.9,
            max_iterations=100,
            tolerance=-np.inf,
        ),
    )
    alpha = measure("Krippendorff alpha", lambda: krippendorff_alpha(judgments=judgments))
    interval = measure(
        f"alpha bootstrap ({options.resamples} resamples)",
        lambda: krippendorff_alpha_interval(
            judgments=judgments, resamples=options.resamples, seed=options.seed
        ),
    )
    fleiss = measure(
        "Fleiss kappa (first 3 per item)",
        lambda: fleiss_kappa(judgments=judgments, ratings_per_item=TARGET),
    )
    agreement = measure("percent agreement", lambda: percent_agreement(judgments=judgments))
    kappas = measure(
        "Cohen kappa matrix (>= 10 shared)",
        lambda: cohen_kappa_matrix(judgments=judgments, min_shared_items=10),
    )
    measure(
        "annotator stats (1% gold)",
        lambda: annotator_stats(judgments=judgments, gold=truth.iloc[::100], dawid_skene=by_model),
    )
    if options.crowdkit:
        measure(
            "Dawid-Skene (crowd-kit engine)",
            lambda: dawid_skene(
                judgments=judgments,
                target_judgments=TARGET,
                agreement_threshold=0.9,
                engine="crowdkit",
            ),
            peak=False,
        )

    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    vote_score = score_labels(predicted=by_vote["label"], truth=truth)
    model_score = score_labels(predicted=by_model.items["label"], truth=truth)
    print()
    print(f"process max RSS                   {max_rss / MiB:8.0f} MiB")
    print(f"majority vote accuracy            {vote_score.accuracy:8.4f}")
    print(
        f"Dawid-Skene accuracy              {model_score.accuracy:8.4f}"
        f"  ({by_model.iterations} EM iterations)"
    )
    print(
        f"Krippendorff alpha                {alpha:8.4f}  [{interval.low:.4f}, {interval.high:.4f}]"
    )
    print(f"Fleiss kappa                      {fleiss.kappa:8.4f}  over {fleiss.items:,} items")
    print(f"percent agreement                 {agreement:8.4f}")
    print(f"Cohen kappa matrix                {len(kappas.kappa)} annotators")
    statuses = by_model.items["status"].value_counts()
    print(
        "Dawid-Skene status                " + ", ".join(f"{k} {v:,}" for k, v in statuses.items())
    )


if __name__ == "__main__":
    main()
