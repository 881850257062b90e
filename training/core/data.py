"""A release directory's pairs table, turned into per-split index arrays.

Images and captions are identified by content (image sha256, sha256 of the caption text) rather than
by database ids: exact duplicates collapse into one retrieval item, an edited caption is a new text
even if the release reuses its caption id, and the same keys address the embedding cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("image_path", "image_sha256", "caption", "label", "split")
# Optional columns and the value a release without them is read with.
DEFAULTS: dict[str, object] = {
    "pair_id": -1,
    "image_id": -1,
    "caption_id": -1,
    "kind": "",
    "label_source": "",
    "confidence": 1.0,
    "cluster_id": -1,
    "weight": 1.0,
}

ERROR_NO_PAIRS = "no pairs.parquet or pairs.jsonl in {path}"
ERROR_MISSING_COLUMNS = "pairs table lacks required columns: {columns}"


def text_key(text: str) -> str:
    """Content key of a caption: the embedding cache and the retrieval item both use it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pairs_file(release_dir: str | Path) -> Path:
    """The pairs table of a release, Parquet preferred over JSONL when both exist."""
    root = Path(release_dir)
    for name in ("pairs.parquet", "pairs.jsonl"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(ERROR_NO_PAIRS.format(path=root))


def read_pairs(release_dir: str | Path) -> pd.DataFrame:
    """Read and validate a release's pairs table; image paths come back absolute."""
    root = Path(release_dir)
    path = pairs_file(root)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(ERROR_MISSING_COLUMNS.format(columns=", ".join(missing)))
    for column, default in DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = default
    frame["caption"] = frame["caption"].astype(str)
    frame["split"] = frame["split"].astype(str)
    frame["label"] = frame["label"].astype(int)
    frame["weight"] = frame["weight"].fillna(1.0).astype(float)
    frame["confidence"] = frame["confidence"].fillna(1.0).astype(float)
    frame["image_path"] = [
        str(p) if Path(p).is_absolute() else str(root / p) for p in frame["image_path"]
    ]
    return frame


def release_fingerprint(release_dir: str | Path) -> str:
    """sha256 of the pairs file, recorded in checkpoints to say what a model was trained on."""
    digest = hashlib.sha256()
    with open(pairs_file(release_dir), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class SplitData:
    """One split as index arrays into its own image and text lists.

    ``pos_*`` are the distinct positive (image, text) pairs: the retrieval ground truth and the
    InfoNCE/triplet training pairs. ``lab_*`` are all labelled rows (positives and negatives)
    for the binary losses and the classification metrics.
    """

    name: str
    image_keys: list[str]
    image_paths: list[str]
    image_ids: list[int]
    texts: list[str]
    text_keys: list[str]
    pos_img: np.ndarray
    pos_txt: np.ndarray
    pos_weight: np.ndarray
    lab_img: np.ndarray
    lab_txt: np.ndarray
    lab_label: np.ndarray
    lab_weight: np.ndarray
    lab_confidence: np.ndarray
    synthetic_negatives: bool = False

    @property
    def num_images(self) -> int:
        return len(self.image_keys)

    @property
    def num_texts(self) -> int:
        return len(self.texts)

    @property
    def has_negatives(self) -> bool:
        return bool((self.lab_label == 0).any())

    def positives_matrix(self) -> np.ndarray:
        """Boolean [images, texts] matrix of positive pairs."""
        matrix = np.zeros((self.num_images, self.num_texts), dtype=bool)
        matrix[self.pos_img, self.pos_txt] = True
        return matrix


@dataclass
class Release:
    """A loaded release: its splits (only those present) and the pairs file's fingerprint."""

    root: Path
    fingerprint: str
    splits: dict[str, SplitData] = field(default_factory=dict)


def build_split(name: str, rows: pd.DataFrame) -> SplitData:
    """Index one split's rows by content key."""
    image_index: dict[str, int] = {}
    image_paths: list[str] = []
    image_ids: list[int] = []
    for sha, path, image_id in zip(
        rows["image_sha256"], rows["image_path"], rows["image_id"], strict=True
    ):
        if sha not in image_index:
            image_index[sha] = len(image_index)
            image_paths.append(path)
            image_ids.append(int(image_id))
    text_index: dict[str, int] = {}
    texts: list[str] = []
    for caption in rows["caption"]:
        key = text_key(caption)
        if key not in text_index:
            text_index[key] = len(text_index)
            texts.append(caption)

    img = np.array([image_index[s] for s in rows["image_sha256"]], dtype=np.int64)
    txt = np.array([text_index[text_key(c)] for c in rows["caption"]], dtype=np.int64)
    label = rows["label"].to_numpy(dtype=np.int64)
    weight = rows["weight"].to_numpy(dtype=np.float64)
    confidence = rows["confidence"].to_numpy(dtype=np.float64)

    positive = label == 1
    # A pair labelled positive twice (e.g. duplicate rows) is one retrieval target.
    pos_codes, first = np.unique(img[positive] * len(texts) + txt[positive], return_index=True)
    return SplitData(
        name=name,
        image_keys=list(image_index),
        image_paths=image_paths,
        image_ids=image_ids,
        texts=texts,
        text_keys=list(text_index),
        pos_img=pos_codes // max(len(texts), 1),
        pos_txt=pos_codes % max(len(texts), 1),
        pos_weight=weight[positive][first],
        lab_img=img,
        lab_txt=txt,
        lab_label=label,
        lab_weight=weight,
        lab_confidence=confidence,
    )


def load_release(release_dir: str | Path) -> Release:
    """Load a release directory into per-split :class:`SplitData` (train, val, test if present)."""
    frame = read_pairs(release_dir)
    release = Release(root=Path(release_dir), fingerprint=release_fingerprint(release_dir))
    for name in SPLITS:
        rows = frame[frame["split"] == name]
        if len(rows):
            release.splits[name] = build_split(name, rows)
    return release


def add_random_negatives(split: SplitData, *, seed: int, per_positive: int = 1) -> SplitData:
    """A copy of ``split`` whose labelled rows gain random non-matching pairs.

    Used when a split carries no labelled negatives, so that the binary losses and the
    classification metrics still have two classes; the result is marked ``synthetic_negatives``.
    """
    rng = np.random.default_rng(seed)
    positives = split.positives_matrix()
    n = len(split.pos_img) * per_positive
    neg_img = np.repeat(split.pos_img, per_positive)
    neg_txt = rng.integers(0, split.num_texts, size=n)
    # Resample the few draws that hit a positive; give up on images that match every text.
    for _ in range(10):
        clash = positives[neg_img, neg_txt]
        if not clash.any():
            break
        neg_txt[clash] = rng.integers(0, split.num_texts, size=int(clash.sum()))
    keep = ~positives[neg_img, neg_txt]
    neg_img, neg_txt = neg_img[keep], neg_txt[keep]
    ones = np.ones(len(neg_img))
    return replace(
        split,
        lab_img=np.concatenate([split.lab_img, neg_img]),
        lab_txt=np.concatenate([split.lab_txt, neg_txt]),
        lab_label=np.concatenate([split.lab_label, np.zeros(len(neg_img), dtype=np.int64)]),
        lab_weight=np.concatenate([split.lab_weight, ones]),
        lab_confidence=np.concatenate([split.lab_confidence, ones]),
        synthetic_negatives=True,
    )
