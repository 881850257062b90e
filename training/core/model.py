"""The matching model: two encoders, two projection heads, and a score between them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.core.config import TrainConfig
from training.core.encoders import (
    EFFICIENTNET_DIM,
    USE_M3_DIM,
    CharNgramTextEncoder,
    EfficientNetTail,
    ScratchImageEncoder,
    ScratchTextEncoder,
    load_efficientnet_lite0,
)

MINILM_DIM = 384
MAX_LOGIT_SCALE = 100.0


class ProjectionHead(nn.Module):
    """Encoder features -> the joint space.

    ``linear`` is one linear map; ``mlp`` adds a GELU hidden layer as a residual on top of it, so
    it starts close to the linear head and only learns the non-linear part it needs. The input
    LayerNorm puts frozen features with very different scales (ReLU6 image activations,
    unit-norm sentence vectors) on an equal footing.
    """

    def __init__(self, in_dim: int, out_dim: int, kind: str, hidden_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.linear = nn.Linear(in_dim, out_dim)
        self.mlp: nn.Module | None = None
        if kind == "mlp":
            self.mlp = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(in_dim, hidden_dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, out_dim),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        out = self.linear(x)
        if self.mlp is not None:
            out = out + self.mlp(x)
        return out


class MatchingModel(nn.Module):
    """Scores image–text pairs: ``s = cos(P_v v, P_t t)`` or ``s = v'ᵀ M t'`` on the projections.

    ``logit_scale`` (1 / temperature) turns scores into InfoNCE logits; ``logit_bias`` with it
    gives calibrated match logits for the binary losses.
    """

    def __init__(self, config: TrainConfig, vocab_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        if config.encoder == "scratch":
            if vocab_size is None:
                raise ValueError("the scratch text encoder needs a vocabulary size")
            image_encoder = ScratchImageEncoder(config.scratch_image_width)
            text_encoder = ScratchTextEncoder(
                vocab_size, config.scratch_word_dim, config.scratch_hidden_dim
            )
            image_dim, text_dim = image_encoder.out_dim, text_encoder.out_dim
            self.image_encoder: nn.Module = image_encoder
            self.text_encoder: nn.Module = text_encoder
        else:
            # Frozen pretrained features arrive precomputed from the embedding cache.
            self.image_encoder = nn.Identity()
            if config.finetune_image_blocks:
                self.image_encoder = EfficientNetTail(
                    load_efficientnet_lite0(), config.finetune_image_blocks
                )
            self.text_encoder = nn.Identity()
            text_dim = USE_M3_DIM if config.text_encoder == "use-m3" else MINILM_DIM
            if config.text_encoder == "char-ngram":
                self.text_encoder = CharNgramTextEncoder(config.ngram_buckets, config.ngram_dim)
                text_dim = config.ngram_dim
            image_dim = EFFICIENTNET_DIM

        head = (config.embed_dim, config.head, config.head_hidden_dim, config.dropout)
        self.image_proj = ProjectionHead(image_dim, *head)
        self.text_proj = ProjectionHead(text_dim, *head)
        self.bilinear: nn.Parameter | None = None
        if config.score == "bilinear":
            # Starts as the identity, i.e. as the cosine score.
            self.bilinear = nn.Parameter(torch.eye(config.embed_dim))
        scale = torch.tensor(math.log(1.0 / config.init_temperature))
        if config.learn_temperature:
            self.log_logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("log_logit_scale", scale)
        self.logit_bias = nn.Parameter(torch.zeros(()))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length joint-space embeddings of images (features or pixels, per encoder)."""
        return F.normalize(self.image_proj(self.image_encoder(images)), dim=-1)

    def encode_text(self, texts: torch.Tensor) -> torch.Tensor:
        """Unit-length joint-space embeddings of captions (features or token ids, per encoder)."""
        return F.normalize(self.text_proj(self.text_encoder(texts)), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def similarity(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Score matrix [images, texts]."""
        if self.bilinear is not None:
            return image_emb @ self.bilinear @ text_emb.T
        return image_emb @ text_emb.T

    def pair_scores(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Scores of aligned rows: pair i is (image_emb[i], text_emb[i])."""
        if self.bilinear is not None:
            image_emb = image_emb @ self.bilinear
        return (image_emb * text_emb).sum(-1)

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embed a batch and score every image against every text."""
        image_emb = self.encode_image(images)
        text_emb = self.encode_text(texts)
        return {
            "image_emb": image_emb,
            "text_emb": text_emb,
            "scores": self.similarity(image_emb, text_emb),
            "logit_scale": self.logit_scale,
            "logit_bias": self.logit_bias,
        }

    def pair_logits(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """Match logits of aligned (image, text) rows, for the binary losses."""
        scores = self.pair_scores(self.encode_image(images), self.encode_text(texts))
        return self.logit_scale * scores + self.logit_bias
