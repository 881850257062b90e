"""What the model consumes for a split's images and texts, per encoder kind.

Pretrained: cached frozen-encoder outputs (the encoders are only loaded when something is missing
from the cache); with the character n-gram text encoder, hashed n-gram ids beside the cached
image features. Scratch: uint8 pixels and padded token ids. With a
:class:`~training.core.store.DataStore`, images are fetched by content key (only those the
cache lacks) and the cache's shards are shared through it.
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
from training.core.store import DataStore

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
    callers see that a rerun computed nothing. ``store``, when given, is where images and the
    shared embedding shards come from (image paths are then ignored).
    """

    config: TrainConfig
    vocab: Vocabulary | None = None
    progress: bool = True
    store: DataStore | None = None
    stats: dict[str, EmbedStats] = field(default_factory=dict)
    _image_encoder: EfficientNetFeatures | None = None
    _text_encoder: MiniLMFeatures | UseM3Features | None = None

    def __post_init__(self) -> None:
        self.device = self.config.resolved_device()
        root = self.config.resolved_cache_dir()
        blocks = self.config.finetune_image_blocks
        self.image_cache = self._cache(
            root, efficientnet_encoder_id(blocks), "float16" if blocks else "float32"
        )
        text_id = (
            use_m3_encoder_id() if self.config.text_encoder == "use-m3" else minilm_encoder_id()
        )
        self.text_cache = self._cache(root, text_id)
        self.stats = {"image": EmbedStats(), "text": EmbedStats()}

    def _cache(self, root, encoder_id: str, dtype: str = "float32") -> EmbeddingCache:
        cache = EmbeddingCache(root, encoder_id, dtype)
        if self.store is not None:
            cache.shared = self.store.embedding_shards(cache.namespace)
        return cache

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
        """Inputs for images addressed by sha256 (pretrained) or read from ``paths`` (scratch);
        with a store, read from the files it fetches for the keys instead of ``paths``."""
        store = self.store
        if self.config.encoder == "scratch":
            files = store.image_files(keys) if store is not None else paths
            return load_pixels(files, self.config.scratch_image_size).to(self.device)

        def load_encoder():
            encoder = self.image_encoder()
            if store is None:
                return encoder
            # Items are content keys: only the images the cache lacks are fetched.
            return lambda batch: encoder(store.image_files(batch))

        vectors, stats = embed_with_cache(
            keys,
            keys if store is not None else paths,
            load_encoder,
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
