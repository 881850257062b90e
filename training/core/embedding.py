"""Joint-space embeddings of any images and captions with a trained checkpoint.

Training and evaluation embed a release's splits; mining hard negatives needs the same
embeddings for a whole project as it stands now. Frozen-encoder features come from (and go
into) the same on-disk cache, so captions and images the model has seen cost nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.core.checkpoint import load_checkpoint, model_from_checkpoint
from training.core.evaluate import embed_inputs
from training.core.inputs import InputBuilder, SplitInputs
from training.core.store import DataStore


@dataclass(frozen=True)
class Embeddings:
    """``images`` [N, d] and ``texts`` [M, d], scored against each other by a dot product."""

    images: np.ndarray
    texts: np.ndarray
    threshold: float | None


@torch.no_grad()
def embed_with_checkpoint(
    checkpoint_path: str | Path,
    *,
    image_keys: Sequence[str],
    image_paths: Sequence[str],
    text_keys: Sequence[str],
    texts: Sequence[str],
    cache_dir: str | Path | None = None,
    progress: bool = False,
    store: DataStore | None = None,
) -> Embeddings:
    """Embed images (addressed by content hash, read from ``image_paths``) and captions (keyed
    by the hash of their text) with the model of ``checkpoint_path``, on the CPU or GPU its
    config resolves to. With a bilinear score the image side is multiplied by the learned
    matrix, so that scores are plain dot products either way. With ``store``, images come from
    it by key (``image_paths`` are ignored) and the embedding cache is shared through it."""
    checkpoint = load_checkpoint(checkpoint_path)
    model, config, vocab = model_from_checkpoint(checkpoint)
    if cache_dir is not None:
        config = dataclasses.replace(config, cache_dir=str(cache_dir))
    builder = InputBuilder(config, vocab=vocab, progress=progress, store=store)
    model = model.to(builder.device)
    inputs = SplitInputs(
        images=builder.images(list(image_keys), list(image_paths)),
        texts=builder.texts(list(text_keys), list(texts)),
    )
    image_emb, text_emb = embed_inputs(model, inputs)
    if model.bilinear is not None:
        image_emb = image_emb @ model.bilinear
    threshold = checkpoint.get("threshold")
    return Embeddings(
        images=image_emb.float().cpu().numpy(),
        texts=text_emb.float().cpu().numpy(),
        threshold=None if threshold is None else float(threshold),
    )
