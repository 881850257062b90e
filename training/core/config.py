"""The one place a training run is described; saved verbatim inside every checkpoint."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

EncoderKind = Literal["pretrained", "scratch"]
TextEncoderKind = Literal["minilm", "use-m3", "char-ngram"]
ScoreKind = Literal["cosine", "bilinear"]
HeadKind = Literal["linear", "mlp"]

DEFAULT_CACHE_DIR_ENV = "CONCORD_EMBEDDING_CACHE"
# The 16 languages USE multilingual v3 was trained on (its model card); "mul" is a project of
# several languages, which a cross-lingual encoder serves best.
USE_M3_LANGUAGES = frozenset(
    {"ar", "de", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh", "mul"}
)


def text_encoder_for_language(language: str) -> str:
    """The frozen-image model's text encoder for captions in ``language`` (a BCP 47 tag):
    all-MiniLM-L6-v2 for English, USE multilingual v3 for the languages it was trained on, and
    for any other language character n-grams trained from scratch (no pretrained vocabulary)."""
    primary = (language or "en").split("-")[0].lower()
    if primary == "en":
        return "minilm"
    if primary in USE_M3_LANGUAGES:
        return "use-m3"
    return "char-ngram"


# Defaults for fields left at 0. Frozen features train best with large batches (many in-batch
# negatives, and steps are cheap); scratch encoders need many more and larger steps.
ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "pretrained": {"batch_size": 256, "lr": 1e-3},
    "scratch": {"batch_size": 64, "lr": 2e-3},
}


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run of the matching model.

    Field names double as ``python -m training train`` options (``embed_dim`` -> ``--embed-dim``).
    """

    # encoders
    encoder: EncoderKind = "pretrained"
    # The text side beside the frozen image encoder ("pretrained" only): frozen MiniLM
    # (English), frozen USE multilingual v3 (16 languages), or hashed character n-grams
    # trained from scratch (any language; text_encoder_for_language chooses per project).
    text_encoder: TextEncoderKind = "minilm"
    ngram_min: int = 1
    ngram_max: int = 3
    ngram_buckets: int = 65536
    ngram_dim: int = 256
    max_caption_ngrams: int = 256
    # >0 trains the last N MBConv blocks (and the head conv) of EfficientNet-Lite0; the frozen
    # part's output is cached like the pooled features, so fine-tuning stays cheap on CPUs.
    finetune_image_blocks: int = 0
    scratch_image_size: int = 48
    scratch_image_width: int = 16
    scratch_word_dim: int = 128
    scratch_hidden_dim: int = 256
    vocab_min_freq: int = 2
    max_caption_tokens: int = 32

    # projection heads and score
    score: ScoreKind = "cosine"
    head: HeadKind = "mlp"
    embed_dim: int = 512
    head_hidden_dim: int = 1024
    dropout: float = 0.5
    init_temperature: float = 0.07
    learn_temperature: bool = True

    # losses: a weight of 0 switches a term off. A light triplet term by default: it is how
    # human-verified hard negatives shape the embedding (bench/mining.py's ablation), and it
    # does not cost InfoNCE's retrieval figures (bench/train.py).
    w_infonce: float = 1.0
    w_triplet: float = 0.1
    w_bce: float = 0.0
    w_hinge: float = 0.0
    triplet_margin: float = 0.2
    triplet_hardest: bool = True
    hinge_margin: float = 1.0

    # optimisation
    epochs: int = 30
    # 0 = the encoder's default (ENCODER_DEFAULTS)
    batch_size: int = 0
    lr: float = 0.0  # 0 = the encoder's default (ENCODER_DEFAULTS)
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    patience: int = 5
    # validation score that picks the best epoch: sum of R@1/5/10 in both directions
    select_metric: str = "rsum"

    # environment
    device: str = "auto"
    # CPU threads for torch; 0 keeps torch's default. Fewer than the cores can be faster when
    # other processes share the machine (oversubscribed OpenMP threads spin against each other).
    threads: int = 0
    cache_dir: str | None = None
    embed_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.encoder not in ("pretrained", "scratch"):
            raise ValueError(f"encoder must be 'pretrained' or 'scratch', not {self.encoder!r}")
        if self.text_encoder not in ("minilm", "use-m3", "char-ngram"):
            raise ValueError(
                f"text_encoder must be 'minilm', 'use-m3' or 'char-ngram', not {self.text_encoder!r}"
            )
        if not 1 <= self.ngram_min <= self.ngram_max or self.ngram_buckets < 1:
            raise ValueError("n-gram sizes must satisfy 1 <= ngram_min <= ngram_max")
        if self.score not in ("cosine", "bilinear"):
            raise ValueError(f"score must be 'cosine' or 'bilinear', not {self.score!r}")
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', not {self.head!r}")
        weights = (self.w_infonce, self.w_triplet, self.w_bce, self.w_hinge)
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError("loss weights must be non-negative and at least one positive")
        for name, value in ENCODER_DEFAULTS[self.encoder].items():
            if not getattr(self, name):
                setattr(self, name, value)
        if self.encoder == "scratch" and self.finetune_image_blocks:
            raise ValueError("finetune_image_blocks only applies to the pretrained encoder")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON- and ``torch.load(weights_only=True)``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys (from newer code) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def resolved_device(self) -> torch.device:
        """``auto`` means the GPU when one is present."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolved_cache_dir(self) -> Path:
        """Explicit ``cache_dir``, else ``$CONCORD_EMBEDDING_CACHE``, else ``~/.cache/concord``."""
        if self.cache_dir:
            return Path(self.cache_dir)
        env = os.environ.get(DEFAULT_CACHE_DIR_ENV)
        if env:
            return Path(env)
        return Path.home() / ".cache" / "concord" / "embeddings"
