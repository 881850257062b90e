"""Benchmark of the matching model on flickr8k-1k: embedding throughput, training time, metrics.

Builds a release-like directory in a temporary folder (pairs.parquet with the release contract's
columns: every caption as a positive plus one random negative per positive, split 70/10/20 by
image on the sha256 of the file name), then trains and evaluates the pretrained (frozen
EfficientNet-Lite0 + MiniLM) and the from-scratch (CNN + LSTM) models. Embedding throughput is
measured on a cold cache.

With ``--captions zh`` it uses the sample's Chinese captions (Flickr8K-CN, captions_zh.csv) of
the same images and the same split instead, and trains beside the frozen image encoder the two
text encoders a Chinese project can get (frozen USE multilingual v3; character n-grams from
scratch), then the English captions with MiniLM and with USE, and prints test R@1/5/10 in both
directions side by side.

    .venv/bin/python bench/train.py [--data DIR] [--captions en|zh] [--scratch-epochs N] [--keep DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from anywhere: the repository root holds the project's packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import hashlib
import tempfile
import time

import numpy as np
import pandas as pd

from training.core.config import TrainConfig
from training.core.data import load_release
from training.core.inputs import InputBuilder
from training.core.train import TrainResult, train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k-1k"


def split_for(name: str) -> str:
    """70/10/20 by image, stable across runs and machines."""
    bucket = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 70 else "val" if bucket < 80 else "test"


CAPTION_FILES = {"en": "captions.csv", "zh": "captions_zh.csv"}


def build_release(
    data_dir: Path, release_dir: Path, *, seed: int = 0, captions_file: str = "captions.csv"
) -> Path:
    """Write ``release_dir/pairs.parquet`` for the images and captions of ``data_dir``."""
    captions = pd.read_csv(data_dir / captions_file)
    names = sorted(captions["image"].unique())
    image_id = {name: i for i, name in enumerate(names)}
    sha = {
        name: hashlib.sha256((data_dir / "images" / name).read_bytes()).hexdigest()
        for name in names
    }
    rows = []
    for caption_id, (name, caption) in enumerate(
        zip(captions["image"], captions["caption"], strict=True)
    ):
        rows.append(
            {
                "image_id": image_id[name],
                "caption_id": caption_id,
                "image_path": str(data_dir / "images" / name),
                "image_sha256": sha[name],
                "caption": caption,
                "kind": "positive",
                "label": 1,
                "label_source": "import",
                "confidence": 1.0,
                "split": split_for(name),
                "cluster_id": image_id[name],
                "weight": 1.0,
            }
        )
    positives = pd.DataFrame(rows)
    rng = np.random.default_rng(seed)
    negatives = []
    for _, group in positives.groupby("split"):
        # A caption of another image of the same split, so negatives never leak across splits.
        other = rng.permutation(len(group))
        clash = group["image_id"].to_numpy() == group["image_id"].to_numpy()[other]
        while clash.any():
            other[clash] = rng.integers(0, len(group), size=int(clash.sum()))
            clash = group["image_id"].to_numpy() == group["image_id"].to_numpy()[other]
        negative = group.copy()
        negative["caption"] = group["caption"].to_numpy()[other]
        negative["caption_id"] = group["caption_id"].to_numpy()[other]
        negative["kind"] = "random_negative"
        negative["label"] = 0
        negative["label_source"] = "random"
        negatives.append(negative)
    pairs = pd.concat([positives, *negatives], ignore_index=True)
    pairs.insert(0, "pair_id", np.arange(len(pairs)))
    release_dir.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(release_dir / "pairs.parquet", index=False)
    return release_dir


def print_result(name: str, result: TrainResult) -> None:
    test = result.metrics["test"]
    print(
        f"\n== {name}: {result.epochs_run} epochs (best {result.best_epoch}), "
        f"training {result.train_seconds:.1f} s, total {result.seconds:.1f} s"
    )
    print(f"test: {test['num_images']} images, {test['num_texts']} captions")
    for direction in ("i2t", "t2i"):
        print(
            f"  {direction}: R@1 {100 * test[f'{direction}_r1']:5.1f}  "
            f"R@5 {100 * test[f'{direction}_r5']:5.1f}  "
            f"R@10 {100 * test[f'{direction}_r10']:5.1f}  "
            f"median rank {test[f'{direction}_median_rank']:.0f}  "
            f"mAP {100 * test[f'{direction}_map']:5.1f}"
        )
    print(
        f"  pairs (threshold {test['threshold']:.3f} from {test['threshold_source']}): "
        f"accuracy {100 * test['accuracy']:.1f}  precision {100 * test['precision']:.1f}  "
        f"recall {100 * test['recall']:.1f}  F1 {100 * test['f1']:.1f}  AP {100 * test['ap']:.1f}"
    )


def multilingual(args: argparse.Namespace, work: Path) -> None:
    """Chinese captions against English ones on the same images and split."""
    cache = str(work / "cache")
    releases = {
        language: build_release(
            args.data, work / f"release-{language}", captions_file=CAPTION_FILES[language]
        )
        for language in ("zh", "en")
    }
    for language, release_dir in releases.items():
        release = load_release(release_dir)
        sizes = ", ".join(
            f"{name} {split.num_images} images / {len(split.pos_img)} captions"
            for name, split in release.splits.items()
        )
        print(f"{language}: {sizes}")
    runs = [
        ("zh", "use-m3", "Chinese, frozen USE multilingual v3"),
        ("zh", "char-ngram", "Chinese, character n-grams (1-3) from scratch"),
        ("en", "minilm", "English, frozen MiniLM (the English default)"),
        ("en", "use-m3", "English, frozen USE multilingual v3"),
        ("en", "char-ngram", "English, character n-grams (1-3) from scratch"),
    ]
    table = []
    for language, text_encoder, name in runs:
        config = TrainConfig(encoder="pretrained", text_encoder=text_encoder, cache_dir=cache)
        result = train(
            config, releases[language], work / f"{language}-{text_encoder}", show_progress=False
        )
        print_result(name, result)
        text = result.embedding.get("text", {})
        if text.get("computed"):
            print(
                f"  text embedding, cold cache: {text['computed']} captions in "
                f"{text['seconds']:.1f} s = {text['computed'] / text['seconds']:.0f} captions/s"
            )
        table.append((name, result.metrics["test"]))
    print("\ntest split, same 1,000 images (frozen EfficientNet-Lite0 for images in every row):")
    print(f"{'':50s} {'image->text R@1/5/10':>22s}   {'text->image R@1/5/10':>22s}")
    for name, test in table:
        i2t = "/".join(f"{100 * test[f'i2t_r{k}']:.1f}" for k in (1, 5, 10))
        t2i = "/".join(f"{100 * test[f't2i_r{k}']:.1f}" for k in (1, 5, 10))
        print(f"{name:50s} {i2t:>22s}   {t2i:>22s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--captions",
        choices=sorted(CAPTION_FILES),
        default="en",
        help="en: the English benchmark; zh: Chinese against English on the same images",
    )
    parser.add_argument("--scratch-epochs", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="work here instead of a temporary folder")
    args = parser.parse_args()

    if args.captions == "zh":
        with tempfile.TemporaryDirectory(prefix="concord-bench-") as tmp:
            multilingual(args, args.keep or Path(tmp))
        return

    with tempfile.TemporaryDirectory(prefix="concord-bench-") as tmp:
        work = args.keep or Path(tmp)
        release_dir = build_release(args.data, work / "release")
        cache = work / "cache"
        release = load_release(release_dir)
        for split_name, split in release.splits.items():
            print(
                f"{split_name}: {split.num_images} images, {len(split.pos_img)} positives, "
                f"{int((split.lab_label == 0).sum())} negatives"
            )

        pretrained = TrainConfig(encoder="pretrained", cache_dir=str(cache))
        builder = InputBuilder(pretrained, progress=False)
        for split in release.splits.values():
            builder.split(split)
        image, text = builder.stats["image"], builder.stats["text"]
        print(
            f"\nembedding, cold cache: {image.computed} images in {image.seconds:.1f} s = "
            f"{image.per_second:.1f} images/s (model load {image.load_seconds:.1f} s); "
            f"{text.computed} captions in {text.seconds:.1f} s = "
            f"{text.per_second:.1f} captions/s (model load {text.load_seconds:.1f} s)"
        )

        started = time.perf_counter()
        result = train(pretrained, release_dir, work / "pretrained", show_progress=False)
        cached = result.embedding
        print(
            f"retrain on warm cache: computed {cached['image']['computed']} images and "
            f"{cached['text']['computed']} captions; run took "
            f"{time.perf_counter() - started:.1f} s"
        )
        print_result(
            "pretrained (frozen EfficientNet-Lite0 + MiniLM, MLP heads, InfoNCE + triplet 0.1)",
            result,
        )

        scratch = TrainConfig(encoder="scratch", epochs=args.scratch_epochs, cache_dir=str(cache))
        result = train(scratch, release_dir, work / "scratch", show_progress=False)
        print_result("scratch (CNN + word embeddings/BiLSTM, InfoNCE + triplet 0.1)", result)


if __name__ == "__main__":
    main()
