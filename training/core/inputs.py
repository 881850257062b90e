"""What the model consumes for a split's images and texts, per encoder kind.

Pretrained: cached frozen-encoder outputs (the encoders are only loaded when something is missing
from the cache); with the character n-gram text encoder, hashed n-gram ids beside the cached
image features. Scratch: uint8 pixels and padded token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from training.core.config import TrainConfig
from training.core.data import SplitData
from training.core.encoders import (
    EfficientNetFeatures,
    EmbeddingCache,
    EmbedStats,
    MiniLMFeatures,
    UseM3Features,
    Vocabulary,
    efficientnet_encoder_id,
    embed_with_cache,
    hash_ngrams,
    load_pixels,
    minilm_encoder_id,
    use_m3_encoder_id,
)

TEXT_EMBED_BATCH = 256


@dataclass
class SplitInputs:
    """Model inputs of one split, row-aligned with the split's image and text lists."""

    images: torch.Tensor
    texts: torch.Tensor


@dataclass
class InputBuilder:
    """Builds :class:`SplitInputs`, reusing loaded encoders across splits.

    ``stats`` accumulates what the embedding cache did (``image`` and ``text``), which is how
    callers see that a rerun computed nothing.
    """

    config: TrainConfig
    vocab: Vocabulary | None = None
    progress: bool = True
    stats: dict[str, EmbedStats] = field(default_factory=dict)
    _image_encoder: EfficientNetFeatures | None = None
    _text_encoder: MiniLMFeatures | UseM3Features | None = None

    def __post_init__(self) -> None:
        self.device = self.config.resolved_device()
        root = self.config.resolved_cache_dir()
        blocks = self.config.finetune_image_blocks
        self.image_cache = EmbeddingCache(
            root, efficientnet_encoder_id(blocks), "float16" if blocks else "float32"
        )
        text_id = (
            use_m3_encoder_id() if self.config.text_encoder == "use-m3" else minilm_encoder_id()
        )
        self.text_cache = EmbeddingCache(root, text_id)
        self.stats = {"image": EmbedStats(), "text": EmbedStats()}

    def image_encoder(self) -> EfficientNetFeatures:
        if self._image_encoder is None:
            self._image_encoder = EfficientNetFeatures(
                self.device, self.config.finetune_image_blocks
            )
        return self._image_encoder

    def text_encoder(self) -> MiniLMFeatures | UseM3Features:
        if self._text_encoder is None:
            if self.config.text_encoder == "use-m3":
                self._text_encoder = UseM3Features(self.config.threads)
            else:
                self._text_encoder = MiniLMFeatures(self.device)
        return self._text_encoder

    def images(self, keys: list[str], paths: list[str]) -> torch.Tensor:
        """Inputs for images addressed by sha256 (pretrained) or read from ``paths`` (scratch)."""
        if self.config.encoder == "scratch":
            return load_pixels(paths, self.config.scratch_image_size).to(self.device)
        vectors, stats = embed_with_cache(
            keys,
            paths,
            self.image_encoder,
            self.image_cache,
            batch_size=self.config.embed_batch_size,
            desc="embed images",
            progress=self.progress,
        )
        self._add("image", stats)
        return torch.from_numpy(vectors).to(self.device)

    def texts(self, keys: list[str], texts: list[str]) -> torch.Tensor:
        """Inputs for captions addressed by the sha256 of their text."""
        if self.config.encoder == "scratch":
            if self.vocab is None:
                raise ValueError("scratch text inputs need a vocabulary")
            return self.vocab.encode(texts, self.config.max_caption_tokens).to(self.device)
        if self.config.text_encoder == "char-ngram":
            config = self.config
            return hash_ngrams(
                texts,
                n_min=config.ngram_min,
                n_max=config.ngram_max,
                buckets=config.ngram_buckets,
                max_len=config.max_caption_ngrams,
            ).to(self.device)
        vectors, stats = embed_with_cache(
            keys,
            texts,
            self.text_encoder,
            self.text_cache,
            batch_size=TEXT_EMBED_BATCH,
            desc="embed captions",
            progress=self.progress,
        )
        self._add("text", stats)
        return torch.from_numpy(vectors).to(self.device)

    def split(self, split: SplitData) -> SplitInputs:
        """Inputs for every image and text of ``split``."""
        return SplitInputs(
            images=self.images(split.image_keys, split.image_paths),
            texts=self.texts(split.text_keys, split.texts),
        )

    def _add(self, kind: str, stats: EmbedStats) -> None:
        total = self.stats[kind]
        total.total += stats.total
        total.computed += stats.computed
        total.seconds += stats.seconds
        total.load_seconds += stats.load_seconds
