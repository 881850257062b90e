"""Reading a release directory into per-split index arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.core.synthetic import write_release
from training.core.data import (
    ERROR_MISSING_COLUMNS,
    add_random_negatives,
    load_release,
    read_pairs,
    text_key,
)


def test_splits_index_images_and_texts_by_content(release_dir: Path) -> None:
    release = load_release(release_dir)
    assert set(release.splits) == {"train", "val", "test"}
    train = release.splits["train"]
    # 24 images, ids 0 and 1 of every 4 in train; two positives each, one hard negative each.
    assert train.num_images == 12
    assert len(train.pos_img) == 24
    assert int((train.lab_label == 0).sum()) == 12
    assert train.text_keys[0] == text_key(train.texts[0])
    assert all(Path(p).is_absolute() and Path(p).exists() for p in train.image_paths)
    positives = train.positives_matrix()
    assert positives.sum() == 24
    assert positives[train.pos_img, train.pos_txt].all()


def test_the_same_caption_on_two_images_is_one_text_with_two_positives(tmp_path: Path) -> None:
    root = write_release(tmp_path / "r")
    frame = pd.read_parquet(root / "pairs.parquet")
    train = frame[(frame["split"] == "train") & (frame["label"] == 1)]
    rows = train.drop_duplicates("image_id").index[:2]  # first positives of two images
    frame.loc[rows, "caption"] = "something in a picture"
    frame.to_parquet(root / "pairs.parquet")
    split = load_release(root).splits["train"]
    column = split.texts.index("something in a picture")
    assert split.positives_matrix()[:, column].sum() == 2


def test_parquet_is_preferred_and_jsonl_is_read(tmp_path: Path) -> None:
    root = write_release(tmp_path / "r", fmt="jsonl")
    assert len(read_pairs(root)) == len(pd.read_json(root / "pairs.jsonl", lines=True))
    frame = read_pairs(root)
    frame.head(3).to_parquet(root / "pairs.parquet")
    assert len(read_pairs(root)) == 3


def test_optional_columns_get_defaults_and_required_ones_are_checked(tmp_path: Path) -> None:
    root = write_release(tmp_path / "r")
    frame = pd.read_parquet(root / "pairs.parquet")
    frame.drop(columns=["weight", "confidence", "kind"]).to_parquet(root / "pairs.parquet")
    pairs = read_pairs(root)
    assert (pairs["weight"] == 1.0).all() and (pairs["confidence"] == 1.0).all()
    frame.drop(columns=["image_sha256"]).to_parquet(root / "pairs.parquet")
    with pytest.raises(ValueError, match=ERROR_MISSING_COLUMNS.split(":")[0]):
        read_pairs(root)


def test_missing_release_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no pairs\.parquet"):
        load_release(tmp_path)


def test_random_negatives_never_hit_a_positive(release_dir: Path) -> None:
    val = load_release(release_dir).splits["val"]
    assert not val.has_negatives
    augmented = add_random_negatives(val, seed=0)
    negatives = augmented.lab_label == 0
    assert augmented.synthetic_negatives and negatives.sum() > 0
    assert not val.positives_matrix()[
        augmented.lab_img[negatives], augmented.lab_txt[negatives]
    ].any()
    again = add_random_negatives(val, seed=0)
    assert np.array_equal(again.lab_txt, augmented.lab_txt)
