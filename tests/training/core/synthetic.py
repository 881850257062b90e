"""A tiny synthetic release (Pillow-drawn coloured shapes with captions that name them) and a
scratch config small enough to train in about a second."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from training.core.config import TrainConfig

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (40, 60, 230),
    "yellow": (240, 220, 30),
}
SHAPES = ("square", "circle", "triangle")
# The same captions in Chinese, for the text encoders of non-English projects.
CHINESE = {
    "red": "红色",
    "green": "绿色",
    "blue": "蓝色",
    "yellow": "黄色",
    "square": "正方形",
    "circle": "圆",
    "triangle": "三角形",
}


def draw(colour: str, shape: str, variant: int, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), (0, 0, 0))
    pen = ImageDraw.Draw(image)
    margin = size // (4 + variant)
    box = (margin, margin, size - margin, size - margin)
    if shape == "square":
        pen.rectangle(box, fill=COLOURS[colour])
    elif shape == "circle":
        pen.ellipse(box, fill=COLOURS[colour])
    else:
        pen.polygon(
            [(size // 2, margin), (margin, size - margin), (size - margin, size - margin)],
            fill=COLOURS[colour],
        )
    return image


def _captions(colour: str, shape: str, other: str, language: str) -> list[tuple[str, int, str]]:
    if language == "zh":
        c, s, o = CHINESE[colour], CHINESE[shape], CHINESE[other]
        return [
            (f"一个{c}的{s}", 1, "positive"),
            (f"黑色背景上画着{c}{s}", 1, "positive"),
            (f"一个{o}的{s}", 0, "hard_negative"),
        ]
    return [
        (f"a {colour} {shape}", 1, "positive"),
        (f"{shape} painted {colour} on black", 1, "positive"),
        (f"a {other} {shape}", 0, "hard_negative"),
    ]


def write_release(
    root: Path, *, size: int = 32, variants: int = 2, fmt: str = "parquet", language: str = "en"
) -> Path:
    """Write images and a pairs table; every image gets two positive captions and, in train,
    one hard negative (its shape in another colour). ``language`` "zh" writes the captions in
    Chinese."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    combos = [(c, s, v) for v in range(variants) for c in COLOURS for s in SHAPES]
    for image_id, (colour, shape, variant) in enumerate(combos):
        path = images / f"{colour}-{shape}-{variant}.png"
        draw(colour, shape, variant, size).save(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        split = ("train", "train", "val", "test")[image_id % 4]
        other = list(COLOURS)[(list(COLOURS).index(colour) + 1) % len(COLOURS)]
        captions = _captions(colour, shape, other, language)
        if split != "train":
            captions = captions[:2]
        for caption, label, kind in captions:
            rows.append(
                {
                    "pair_id": len(rows),
                    "image_id": image_id,
                    "caption_id": len(rows),
                    "image_path": f"images/{path.name}",
                    "image_sha256": sha,
                    "caption": caption,
                    "kind": kind,
                    "label": label,
                    "label_source": "test",
                    "confidence": 1.0,
                    "split": split,
                    "cluster_id": image_id,
                    "weight": 1.0,
                }
            )
    frame = pd.DataFrame(rows)
    if fmt == "parquet":
        frame.to_parquet(root / "pairs.parquet", index=False)
    else:
        frame.to_json(root / "pairs.jsonl", orient="records", lines=True)
    return root


def tiny_config(tmp_path: Path, **overrides: object) -> TrainConfig:
    """A scratch model small enough to train a few epochs in about a second on a CPU."""
    values: dict[str, object] = {
        "encoder": "scratch",
        "scratch_image_size": 32,
        "scratch_image_width": 8,
        "scratch_word_dim": 16,
        "scratch_hidden_dim": 32,
        "vocab_min_freq": 1,
        "embed_dim": 32,
        # Tests switch loss terms on explicitly; InfoNCE alone unless they do.
        "w_triplet": 0.0,
        "head_hidden_dim": 64,
        "batch_size": 8,
        "epochs": 3,
        "lr": 3e-3,
        "warmup_steps": 2,
        "patience": 10,
        "device": "cpu",
        "threads": 1,
        "cache_dir": str(tmp_path / "cache"),
    }
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]
