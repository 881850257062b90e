"""The text encoders of non-English projects, on tiny synthetic data on the CPU: frozen USE
multilingual v3 and character n-grams trained from scratch, beside the frozen image encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.core.synthetic import tiny_config, write_release
from training.core.checkpoint import load_checkpoint, model_from_checkpoint
from training.core.config import TrainConfig, text_encoder_for_language
from training.core.data import load_release
from training.core.encoders import (
    USE_M3_DIM,
    CharNgramTextEncoder,
    UseM3Features,
    char_ngrams,
    hash_ngrams,
)
from training.core.evaluate import embed_inputs, evaluate
from training.core.inputs import InputBuilder
from training.core.train import train


@pytest.mark.parametrize(
    ("language", "encoder"),
    [
        ("en", "minilm"),
        ("en-GB", "minilm"),
        ("zh", "use-m3"),
        ("ja", "use-m3"),
        ("th", "use-m3"),
        ("ko", "use-m3"),
        ("de", "use-m3"),
        ("ar", "use-m3"),
        ("mul", "use-m3"),
        ("hi", "char-ngram"),
        ("he", "char-ngram"),
        ("fa", "char-ngram"),
        ("sw", "char-ngram"),
    ],
)
def test_each_language_gets_a_text_encoder(language, encoder):
    assert text_encoder_for_language(language) == encoder


def test_unknown_text_encoder_is_refused():
    with pytest.raises(ValueError, match="text_encoder"):
        TrainConfig(text_encoder="bert")


def test_char_ngrams_need_no_tokenizer_in_any_script():
    assert char_ngrams("Ａ狗", 1, 2) == ["\x02", "a", "狗", "\x03", "\x02a", "a狗", "狗\x03"]
    # Hindi keeps its combining marks inside the n-grams; Thai needs no word boundaries.
    assert "ुत्" in char_ngrams("कुत्ता", 3, 3)
    assert len(char_ngrams("สุนัข", 2, 2)) == len("สุนัข") + 1
    ids = hash_ngrams(["两只狗", "", "狗"], n_min=1, n_max=2, buckets=97, max_len=8)
    # An empty caption still has its boundary marks; the rest of its row pads.
    assert ids.shape == (3, 8) and ids[1, 3:].tolist() == [0] * 5
    # Stable across processes and machines (CRC-32, not Python's salted hash).
    again = hash_ngrams(["两只狗"], n_min=1, n_max=2, buckets=97, max_len=8)
    assert torch.equal(ids[:1], again)
    assert int(ids.max()) <= 97 and int(ids[0].min()) >= 1


def test_char_ngram_encoder_ignores_padding():
    encoder = CharNgramTextEncoder(buckets=50, dim=8)
    padded = encoder(torch.tensor([[3, 7, 0, 0]]))

    assert torch.allclose(padded, encoder(torch.tensor([[3, 7]])))


@pytest.fixture(scope="module")
def chinese_release(tmp_path_factory) -> Path:
    return write_release(
        tmp_path_factory.mktemp("zh") / "release", size=64, variants=1, language="zh"
    )


def _frozen_config(tmp_path: Path, text_encoder: str, **overrides) -> TrainConfig:
    values = dict(encoder="pretrained", text_encoder=text_encoder, head="linear", epochs=6)
    values |= {"ngram_buckets": 4096, "ngram_dim": 32, "lr": 1e-2} | overrides
    return tiny_config(tmp_path, **values)


def test_char_ngram_model_trains_on_chinese_and_round_trips(tmp_path, chinese_release):
    config = _frozen_config(tmp_path, "char-ngram")
    result = train(config, chinese_release, tmp_path / "out", show_progress=False)

    assert result.history[-1]["train"]["loss"] < result.history[0]["train"]["loss"]
    assert result.embedding["text"]["computed"] == 0  # nothing frozen on the text side
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint["encoder_ids"]["text"] == "char-ngram (trained)"
    assert checkpoint["model"]["text_encoder.embed.weight"].shape == (4097, 32)
    # A reloaded checkpoint scores exactly as the trained model did.
    model, loaded, _ = model_from_checkpoint(checkpoint)
    inputs = InputBuilder(loaded, progress=False).split(
        load_release(chinese_release).splits["test"]
    )
    image_emb, text_emb = embed_inputs(model, inputs)
    assert image_emb.shape[1] == text_emb.shape[1] == config.embed_dim
    assert evaluate(result.checkpoint, chinese_release) == result.metrics


def test_use_m3_model_trains_on_chinese_from_cached_embeddings(tmp_path, chinese_release):
    config = _frozen_config(tmp_path, "use-m3")
    first = train(config, chinese_release, tmp_path / "first", show_progress=False)

    assert first.embedding["text"]["computed"] == 24
    text_cache = next(p for p in (tmp_path / "cache").iterdir() if "use-multilingual" in p.name)
    with np.load(next(text_cache.glob("shard-*.npz"))) as shard:
        assert shard["vectors"].shape[1] == USE_M3_DIM
    second = train(config, chinese_release, tmp_path / "second", show_progress=False)
    assert second.embedding["text"]["computed"] == 0
    assert second.metrics == first.metrics
    assert evaluate(first.checkpoint, chinese_release) == first.metrics


def test_use_m3_weights_are_real_and_cross_lingual():
    encode = UseM3Features(threads=1)
    vectors = encode(["一个红色的圆", "a red circle", "a blue square", "两只狗在海滩上玩"])

    assert vectors.shape == (4, USE_M3_DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    same, other = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert same > 0.7 and same > other + 0.1
