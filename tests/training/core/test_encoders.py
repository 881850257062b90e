"""Embedding cache, vocabulary, scratch encoders, and (once) the real pretrained encoders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tests.training.core.synthetic import tiny_config, write_release
from training.core.checkpoint import load_checkpoint
from training.core.data import load_release
from training.core.encoders import (
    EFFICIENTNET_DIM,
    EmbeddingCache,
    ScratchImageEncoder,
    ScratchTextEncoder,
    Vocabulary,
    embed_with_cache,
    tokenize,
)
from training.core.evaluate import evaluate
from training.core.inputs import InputBuilder
from training.core.train import train


class CountingEncoder:
    """Stands in for a frozen encoder: a deterministic vector per item, and a call log."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, items: Sequence[str]) -> np.ndarray:
        self.seen.extend(items)
        return np.array([[len(s), ord(s[0]), 1.5] for s in items], dtype=np.float32)


def test_second_run_computes_nothing_and_a_new_release_only_what_is_new(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    keys, items = ["k1", "k2", "k3"], ["apple", "banana", "cherry"]
    first, stats = embed_with_cache(
        keys, items, lambda: encoder, EmbeddingCache(tmp_path, "enc"), batch_size=2, progress=False
    )
    assert stats.computed == 3 and encoder.seen == items

    # A fresh cache object (another process) reads the shards back.
    loaded: list[int] = []
    again, stats = embed_with_cache(
        keys,
        items,
        lambda: loaded.append(1) or encoder,
        EmbeddingCache(tmp_path, "enc"),
        progress=False,
    )
    assert stats.computed == 0 and not loaded  # the encoder is not even loaded
    assert np.array_equal(first, again)

    _, stats = embed_with_cache(
        ["k2", "k4"],
        ["banana", "date"],
        lambda: encoder,
        EmbeddingCache(tmp_path, "enc"),
        progress=False,
    )
    assert stats.computed == 1 and encoder.seen[-1] == "date"


def test_encoder_ids_are_separate_namespaces(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path, "enc/v1").put(["k"], np.ones((1, 2)))
    assert EmbeddingCache(tmp_path, "enc/v1").get(["k"])
    assert not EmbeddingCache(tmp_path, "enc/v2").get(["k"])


def test_readers_see_whole_shards_only(tmp_path: Path) -> None:
    writer, reader = EmbeddingCache(tmp_path, "enc"), EmbeddingCache(tmp_path, "enc")
    assert len(reader) == 0
    (writer.dir).mkdir(parents=True)
    (writer.dir / ".shard-half-written.npz.tmp").write_bytes(b"partial")
    writer.put(["a", "b"], np.arange(4, dtype=np.float32).reshape(2, 2))
    assert len(reader) == 2
    assert reader.get(["b"])["b"].tolist() == [2.0, 3.0]


def test_compaction_keeps_every_row(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "enc")
    for i in range(3):
        cache.put([f"k{i}"], np.full((1, 2), i, dtype=np.float32))
    reader = EmbeddingCache(tmp_path, "enc")
    assert len(reader) == 3
    cache.compact()
    assert len(list(cache.dir.glob("shard-*.npz"))) == 1
    assert len(EmbeddingCache(tmp_path, "enc")) == len(reader) == 3
    assert EmbeddingCache(tmp_path, "enc").get(["k2"])["k2"].tolist() == [2.0, 2.0]


def test_vocabulary_round_trip() -> None:
    assert tokenize("A dog, running!") == ["a", "dog", "running"]
    vocab = Vocabulary.build(["a dog", "a cat", "a dog runs"], min_freq=2)
    assert vocab.words == ["<pad>", "<unk>", "a", "dog"]
    ids = vocab.encode(["a dog", "cat", ""], max_len=4)
    assert ids.tolist() == [[2, 3], [1, 0], [1, 0]]
    assert Vocabulary.from_dict(vocab.to_dict()).words == vocab.words


def test_scratch_encoders_shapes() -> None:
    image = ScratchImageEncoder(width=4)
    assert image(torch.zeros((2, 3, 32, 32), dtype=torch.uint8)).shape == (2, image.out_dim)
    text = ScratchTextEncoder(vocab_size=10, word_dim=8, hidden_dim=6)
    out = text(torch.tensor([[2, 3, 0], [4, 0, 0]]))
    assert out.shape == (2, 6)
    # Padding does not change a caption's embedding.
    assert torch.allclose(text(torch.tensor([[4]])), out[1:])


def test_pretrained_encoders_end_to_end_and_cached(tmp_path: Path) -> None:
    """The one test that loads EfficientNet-Lite0 and MiniLM (a dozen small images)."""
    release_dir = write_release(tmp_path / "release", size=64, variants=1)
    config = tiny_config(tmp_path, encoder="pretrained", head="linear", epochs=1)
    first = train(config, release_dir, tmp_path / "frozen", show_progress=False)
    assert first.embedding["image"]["computed"] == 12
    # 24 distinct captions (the hard negatives reuse other images' captions).
    assert first.embedding["text"]["computed"] == 24
    image_cache = next(p for p in (tmp_path / "cache").iterdir() if "efficientnet" in p.name)
    with np.load(next(image_cache.glob("shard-*.npz"))) as shard:
        assert shard["vectors"].shape[1] == EFFICIENTNET_DIM == 1600

    # Retraining reads everything back (without loading either encoder).
    builder = InputBuilder(config, progress=False)
    for split in load_release(release_dir).splits.values():
        builder.split(split)
    assert builder.stats["image"].computed == builder.stats["text"].computed == 0
    assert builder._image_encoder is None and builder._text_encoder is None

    # Fine-tuning the last block caches that block's input under its own encoder id.
    tuned = replace(config, finetune_image_blocks=1)
    second = train(tuned, release_dir, tmp_path / "tuned", show_progress=False)
    assert second.embedding["image"]["computed"] == 12
    assert second.embedding["text"]["computed"] == 0
    state = load_checkpoint(second.checkpoint)["model"]
    assert any(k.startswith("image_encoder.blocks.0.") for k in state)
    assert evaluate(second.checkpoint, release_dir) == second.metrics
