"""Ablation for hard negatives on flickr8k-1k, through Concord's own pipeline.

1. Import the images and captions (a trusted source), add one random negative per image, cut
   release v1 (70/10/20 by duplicate cluster) and train model A on it; promote A.
2. Mine with A: model-mined and text-edit proposals within the project's quotas, bundled into
   challenge items; a simulated crowd (annotators of known reliability, some spammers) answers
   them through the real queue; aggregation decides each proposal.
3. Cut release v2 (same splits: a release keeps every image where the last one put it). For
   each loss mix of ``LOSS_VARIANTS``, train on v2 and, with the same config and seed, on v2
   without its verified hard and text-edit negatives (random negatives only). Every model is
   evaluated on v2's test split: the same images, and the same labelled pairs (whose gallery
   holds the text edits too, so retrieval there is harder than on a release without them).

The simulated crowd takes a caption written for another image as not describing this one (the
dataset's own assumption), so the negatives it confirms include the real false negatives a
person would have caught: this ablation is pessimistic about mined negatives.

Runs in a throwaway SQLite database in a temporary folder. The frozen encoders' features are
cached on disk (``CONCORD_EMBEDDING_CACHE``), so a second run embeds nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script from anywhere: the repository root holds the project's packages.
sys.path.insert(0, str(ROOT))

# Both models get the BCE and triplet terms beside InfoNCE: they are where labelled negatives
# enter training (the baseline's are random negatives, B's also the verified hard ones).
ABLATION_CONFIG: dict[str, Any] = {"w_bce": 0.5, "w_triplet": 0.5}
# The final comparison, per loss mix (InfoNCE always on): each trained on v2 with random
# negatives only and with the verified hard negatives too.
LOSS_VARIANTS: dict[str, dict[str, Any]] = {
    "bce+triplet 0.5": {"w_bce": 0.5, "w_triplet": 0.5},
    "triplet 0.1": {"w_triplet": 0.1},
    "bce 0.5": {"w_bce": 0.5},
}
METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "ap", "f1")


def ablation(
    *, data: Path, annotators: int = 7, spammers: float = 0.15, seed: int = 0, epochs: int = 0
) -> None:
    var = Path(tempfile.mkdtemp(prefix="concord-ablation-"))
    os.environ.update(CONCORD_VAR_DIR=str(var), DEBUG="1", LOG_LEVEL="WARNING")
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotate.simulation.services import crowd_simulate, random_negatives_create
    from config.storage import MODELS, file_sha256, storage_upload
    from datasets.ingest.services.imports import records_import
    from datasets.ingest.sources import parse_manifest
    from datasets.projects.services import project_create
    from datasets.releases import services
    from training.core.config import TrainConfig
    from training.core.evaluate import evaluate
    from training.core.train import train
    from training.negatives.selectors import source_rows
    from training.negatives.services.mining import mining_run
    from training.registry.models import ModelVersion, VersionStatus

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    project = project_create(
        creator=user,
        name="Ablation",
        trusted_sources=["manifest"],
        gold_rate=0.0,
        challenge_rate=1.0,
        negatives_random_per_image=0,
        negatives_model_per_image=3,
        negatives_text_edit_per_image=1,
        judgments_per_item=3,
    )
    records, problems = parse_manifest(data / "captions.csv")
    assert not problems, problems
    records_import(project=project, records=records, images_dir=data / "images", source="manifest")
    random_negatives_create(project=project, seed=seed)

    def cut(name: str) -> Path:
        # Images copied into the release, so that the core trains on the downloaded folder.
        options = services.release_options(project=project, copy_images=True)
        release = services.release_request(project=project, user=user, options=options)
        release = services.release_build(release_id=release.pk)
        assert release.status == "ready", release.error
        print(f"release {name}: {release.counts.get('pairs', release.counts)}")
        folder = var / "downloaded" / name
        services.release_download(release=release, target=folder)
        return release, folder

    config = TrainConfig.from_dict(
        ABLATION_CONFIG | {"seed": seed} | ({"epochs": epochs} if epochs else {})
    )
    started = time.perf_counter()
    release_v1, v1 = cut("v1")
    model_a = train(config, v1, var / "models" / "a", show_progress=False)
    print(f"model A (v1, random negatives): {time.perf_counter() - started:.0f} s")
    # Mining reads the promoted checkpoint from the models storage, as on a worker.
    storage_upload(alias=MODELS, name=f"{project.slug}/a/best.pt", source=model_a.checkpoint)
    ModelVersion.objects.create(
        project=project,
        release=release_v1,
        config=config.to_dict(),
        status=VersionStatus.READY,
        checkpoint=f"{project.slug}/a/best.pt",
        checkpoint_sha256=file_sha256(model_a.checkpoint),
        is_promoted=True,
        metrics={},
    )

    started = time.perf_counter()
    mined = mining_run(project=project, seed=seed)
    print(
        f"mined with A: {mined.proposals.model} model-mined, {mined.proposals.text_edit} text "
        f"edits, {mined.challenges} challenge items ({time.perf_counter() - started:.0f} s)"
    )
    started = time.perf_counter()
    crowd = crowd_simulate(
        project=project,
        annotators=annotators,
        spammer_fraction=spammers,
        seed=seed,
        challenges_only=True,
    )
    print(
        f"simulated crowd: {crowd.annotators} annotators ({crowd.spammers} spammers), "
        f"{crowd.judgments} challenge answers in {crowd.rounds} rounds, "
        f"{time.perf_counter() - started:.0f} s; Dawid–Skene accuracy on known pairs "
        f"{crowd.dawid_skene_accuracy:.3f} (majority vote {crowd.majority_vote_accuracy:.3f})"
    )
    for row in source_rows(project=project):
        if row.proposed:
            print(
                f"  {row.label:<12} proposed {row.proposed:5d}  judged {row.judged:5d}  "
                f"confirmed negatives {row.negatives:5d}  found positives {row.positives:4d}"
            )

    _, v2 = cut("v2")
    random_only = var / "v2-random-only"
    _without_verified_negatives(v2, random_only)
    results: dict[str, dict] = {}
    for label, losses in LOSS_VARIANTS.items():
        variant = TrainConfig.from_dict(
            losses | {"seed": seed} | ({"epochs": epochs} if epochs else {})
        )
        for data_name, directory in (("random only", random_only), ("+ verified hard", v2)):
            name = f"{label}, {data_name}"
            started = time.perf_counter()
            out = var / "models" / f"{label}-{data_name}".replace(" ", "-").replace(",", "")
            result = train(variant, directory, out, show_progress=False)
            # Both scored on v2: the same test images and labelled pairs, the verified hard and
            # text-edit negatives among them (each model's threshold from v2's val split).
            results[name] = evaluate(result.checkpoint, v2)
            elapsed = time.perf_counter() - started
            print(f"trained {name}: {elapsed:.0f} s, {result.epochs_run} epochs", flush=True)
    print()
    print("test split of v2, the same images and labelled pairs for every model; percentages:")
    print(f"{'losses, training negatives':<36}" + "".join(f"{m:>8}" for m in METRICS))
    for name, metrics in results.items():
        test = metrics["test"]
        print(f"{name:<36}" + "".join(f"{100 * test[m]:8.1f}" for m in METRICS))
    shutil.rmtree(var, ignore_errors=True)


def _without_verified_negatives(release_dir: Path, target: Path) -> None:
    """A copy of a release whose pairs table keeps positives and random negatives only."""
    import pandas as pd

    target.mkdir(parents=True)
    for entry in release_dir.iterdir():
        if entry.name not in ("pairs.parquet", "pairs.jsonl"):
            (target / entry.name).symlink_to(entry)
    pairs = pd.read_parquet(release_dir / "pairs.parquet")
    keep = pairs["kind"].isin(["positive", "random_negative"])
    pairs[keep].to_parquet(target / "pairs.parquet", index=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared/data/flickr8k-1k",
        help="flickr8k-1k folder (captions.csv, images/)",
    )
    ablation(data=parser.parse_args().data)
