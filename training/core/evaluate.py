"""Scoring a release's splits with a model: retrieval over positives, classification over
labelled pairs with a threshold chosen on validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.core.checkpoint import load_checkpoint, model_from_checkpoint
from training.core.data import SplitData, add_random_negatives, load_release
from training.core.inputs import InputBuilder, SplitInputs
from training.core.metrics import (
    average_precision,
    best_f1_threshold,
    classification_metrics,
    retrieval_ranks,
    rsum,
    summarise_ranks,
)
from training.core.model import MatchingModel
from training.core.store import DataStore

EMBED_BATCH = 512
# Query rows scored at once: bounds memory to CHUNK x gallery scores on large splits.
RANK_CHUNK = 1024
# Fixed so that a split without labelled negatives gets the same synthetic ones every time.
SYNTHETIC_NEGATIVES_SEED = 0


@torch.no_grad()
def embed_inputs(model: MatchingModel, inputs: SplitInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint-space embeddings of a split's images and texts (model in eval mode)."""
    was_training = model.training
    model.eval()
    images = [
        model.encode_image(inputs.images[i : i + EMBED_BATCH])
        for i in range(0, len(inputs.images), EMBED_BATCH)
    ]
    texts = [
        model.encode_text(inputs.texts[i : i + EMBED_BATCH])
        for i in range(0, len(inputs.texts), EMBED_BATCH)
    ]
    model.train(was_training)
    dim = model.config.embed_dim
    empty = torch.zeros((0, dim))
    return (torch.cat(images) if images else empty), (torch.cat(texts) if texts else empty)


@torch.no_grad()
def _ranks(
    model: MatchingModel,
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    positives: np.ndarray,
    image_queries: bool,
) -> tuple[np.ndarray, np.ndarray]:
    first, ap = [], []
    count = len(image_emb) if image_queries else len(text_emb)
    for start in range(0, count, RANK_CHUNK):
        rows = slice(start, start + RANK_CHUNK)
        if image_queries:
            sim, pos = model.similarity(image_emb[rows], text_emb), positives[rows]
        else:
            sim, pos = model.similarity(image_emb, text_emb[rows]).T, positives[:, rows].T
        f, a = retrieval_ranks(sim.cpu().numpy(), pos)
        first.append(f)
        ap.append(a)
    if not first:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(first), np.concatenate(ap)


@torch.no_grad()
def labelled_scores(
    model: MatchingModel, split: SplitData, image_emb: torch.Tensor, text_emb: torch.Tensor
) -> np.ndarray:
    """Raw scores of the split's labelled pairs (row-aligned with ``split.lab_*``)."""
    img = torch.as_tensor(split.lab_img, device=image_emb.device)
    txt = torch.as_tensor(split.lab_txt, device=text_emb.device)
    return model.pair_scores(image_emb[img], text_emb[txt]).cpu().numpy()


def retrieval_report(
    model: MatchingModel, split: SplitData, image_emb: torch.Tensor, text_emb: torch.Tensor
) -> dict[str, float]:
    """R@1/5/10, median/mean rank and mAP in both directions over the split's positives.

    The galleries are the images and texts that take part in at least one positive pair, so a
    release's extra negatives (e.g. edited captions) do not change the retrieval task.
    """
    positives = split.positives_matrix()
    image_rows = positives.any(axis=1)
    text_cols = positives.any(axis=0)
    positives = positives[image_rows][:, text_cols]
    image_emb = image_emb[torch.as_tensor(image_rows, device=image_emb.device)]
    text_emb = text_emb[torch.as_tensor(text_cols, device=text_emb.device)]
    out: dict[str, float] = {}
    for direction, image_queries in (("i2t", True), ("t2i", False)):
        ranks = _ranks(model, image_emb, text_emb, positives, image_queries)
        out |= {f"{direction}_{k}": v for k, v in summarise_ranks(*ranks).items()}
    out["rsum"] = rsum(out)
    return out


def evaluate_model(
    model: MatchingModel,
    splits: dict[str, SplitData],
    inputs: dict[str, SplitInputs],
    *,
    fallback_threshold: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per split for an in-memory model.

    The match threshold maximises F1 on the val split's labelled pairs; without a usable val
    split it is ``fallback_threshold`` (e.g. the checkpoint's), and failing that each split's own
    best-F1 threshold (optimistic; reported as ``threshold_source: "self"``). Splits without
    labelled negatives are scored against fixed random negatives (``synthetic_negatives``).
    """
    prepared: dict[str, tuple[SplitData, np.ndarray, dict[str, float]]] = {}
    for name, split in splits.items():
        image_emb, text_emb = embed_inputs(model, inputs[name])
        if not split.has_negatives:
            split = add_random_negatives(split, seed=SYNTHETIC_NEGATIVES_SEED)
        scores = labelled_scores(model, split, image_emb, text_emb)
        prepared[name] = (split, scores, retrieval_report(model, split, image_emb, text_emb))

    threshold, source = fallback_threshold, "checkpoint"
    if "val" in prepared:
        val_split, val_scores, _ = prepared["val"]
        if 0 < val_split.lab_label.sum() < len(val_split.lab_label):
            threshold, source = best_f1_threshold(val_scores, val_split.lab_label), "val"

    report: dict[str, dict[str, Any]] = {}
    for name, (split, scores, retrieval) in prepared.items():
        own = threshold is None
        cut = best_f1_threshold(scores, split.lab_label) if own else threshold
        report[name] = {
            "num_images": split.num_images,
            "num_texts": split.num_texts,
            "num_positive_pairs": len(split.pos_img),
            "num_labelled_pairs": len(split.lab_label),
            **retrieval,
            **classification_metrics(scores, split.lab_label, cut),
            "threshold_source": "self" if own else source,
            "ap": average_precision(scores, split.lab_label),
            "synthetic_negatives": split.synthetic_negatives,
        }
    return report


def evaluate(
    checkpoint_path: str | Path,
    release_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = False,
    store: DataStore | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per split (``{"train": {...}, "val": {...}, "test": {...}}``) of a saved model on
    a release. ``cache_dir``/``device`` override the ones recorded in the checkpoint's config;
    ``store`` serves images and embeddings as in :func:`training.core.train.train`."""
    checkpoint = load_checkpoint(checkpoint_path)
    overrides: dict[str, Any] = {}
    if cache_dir is not None:
        overrides["cache_dir"] = str(cache_dir)
    if device is not None:
        overrides["device"] = device
    checkpoint["config"] = {**checkpoint["config"], **overrides}
    model, config, vocab = model_from_checkpoint(checkpoint)
    model.to(config.resolved_device())
    release = load_release(release_dir)
    builder = InputBuilder(config, vocab=vocab, progress=progress, store=store)
    inputs = {name: builder.split(split) for name, split in release.splits.items()}
    return evaluate_model(
        model, release.splits, inputs, fallback_threshold=checkpoint.get("threshold")
    )
