"""Checkpoint files: plain dicts of tensors and built-in types, loadable with ``weights_only``.

Keys of a checkpoint (``best.pt`` / ``last.pt``):
  format            "concord-matching-v1"
  config            TrainConfig.to_dict()
  model             model state dict (heads, score, temperature; scratch or fine-tuned encoders)
  vocab             {"words": [...]} for the scratch text encoder, else None
  encoder_ids       {"image": ..., "text": ...} cache namespaces of the frozen encoders, else None
  epoch             the (1-based) epoch the weights are from
  threshold         match threshold on the raw score, chosen on validation (max F1)
  metrics           {split: {metric: value}} of these weights
  release           {"path": ..., "fingerprint": sha256 of the pairs file}
last.pt adds the resumable state: optimizer, step, history, best_score, best_epoch, bad_epochs,
finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from training.core.config import TrainConfig
from training.core.encoders import Vocabulary
from training.core.model import MatchingModel

CHECKPOINT_FORMAT = "concord-matching-v1"
ERROR_FORMAT = "{path} is not a Concord matching-model checkpoint"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically, so a run killed mid-save leaves the previous file intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (tensors only, no pickled code)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(ERROR_FORMAT.format(path=path))
    return checkpoint


def model_from_checkpoint(
    checkpoint: dict[str, Any], device: torch.device | str = "cpu"
) -> tuple[MatchingModel, TrainConfig, Vocabulary | None]:
    """Rebuild the model (in eval mode), its config and vocabulary from a loaded checkpoint."""
    config = TrainConfig.from_dict(checkpoint["config"])
    vocab = Vocabulary.from_dict(checkpoint["vocab"]) if checkpoint.get("vocab") else None
    model = MatchingModel(config, len(vocab) if vocab else None)
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), config, vocab
