"""Hard-negative mining against hand-worked cases and a brute-force float64 reference."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from training.core.mining import (
    ERROR_CAPTION_IMAGE_RANGE,
    ERROR_CAPTION_SHAPE,
    ERROR_EMBEDDING_SHAPE,
    ERROR_K,
    ERROR_MARGIN,
    ERROR_SCREEN,
    ERROR_TEXT_GROUP,
    MinedNegatives,
    _caption_bounds,
    _screen_bound,
    best_own_positive,
    mine_hard_negatives,
    own_text_group_matrix,
)

SCREENS = ("bfloat16", "float32")


def unit(*rows: tuple[float, ...]) -> np.ndarray:
    array = np.array(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def proposals(mined: MinedNegatives) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for image, caption in zip(mined.image_index, mined.caption_index, strict=True):
        out.setdefault(int(image), []).append(int(caption))
    return out


def reference(
    image_emb: np.ndarray,
    caption_emb: np.ndarray,
    caption_image: np.ndarray,
    image_group: np.ndarray,
    caption_text_group: np.ndarray,
    *,
    k: int,
    margin: float,
) -> dict[int, list[int]]:
    """The rules read literally, one image at a time, in float64."""
    scores = image_emb.astype(np.float64) @ caption_emb.astype(np.float64).T
    caption_group = image_group[caption_image]
    out: dict[int, list[int]] = {}
    for image in range(len(image_emb)):
        own = np.flatnonzero(caption_group == image_group[image])
        own_texts = set(caption_text_group[own].tolist())
        cap = scores[image, own].max() + margin if len(own) else math.inf
        eligible = [
            c
            for c in range(len(caption_emb))
            if caption_group[c] != image_group[image]
            and caption_text_group[c] not in own_texts
            and scores[image, c] <= cap
        ]
        eligible.sort(key=lambda c: (-scores[image, c], c))
        if eligible[:k]:
            out[image] = eligible[:k]
    return out


def random_problem(
    seed: int, *, images: int = 40, captions: int = 150, dim: int = 16
) -> dict[str, np.ndarray]:
    """Captions near their image (so own positives score high), some duplicate groups, and text
    groups shared across images."""
    rng = np.random.default_rng(seed)
    image_emb = rng.standard_normal((images, dim)).astype(np.float32)
    image_group = np.arange(images, dtype=np.int64)
    for copy in rng.choice(images, images // 5, replace=False):
        original = int(rng.integers(images))
        image_group[copy] = image_group[original]
        image_emb[copy] = image_emb[original] + 0.2 * rng.standard_normal(dim)
    image_emb /= np.linalg.norm(image_emb, axis=1, keepdims=True)
    caption_image = rng.integers(0, images, captions).astype(np.int64)
    caption_emb = image_emb[caption_image] + 0.8 * rng.standard_normal((captions, dim))
    caption_emb = (caption_emb / np.linalg.norm(caption_emb, axis=1, keepdims=True)).astype(
        np.float32
    )
    caption_text_group = rng.integers(0, captions * 3 // 4, captions).astype(np.int64)
    return {
        "image_emb": image_emb,
        "caption_emb": caption_emb,
        "caption_image": caption_image,
        "image_group": image_group,
        "caption_text_group": caption_text_group,
    }


# Image 0 and image 1 are duplicates (group 7); images 2 and 3 are singletons.
HAND = {
    "image_emb": unit((1, 0, 0), (1, 0, 0.05), (0, 1, 0), (0, 0, 1)),
    "caption_emb": unit(
        (1, 0, 0),  # 0: image 0, text 100
        (0.8, 0.6, 0),  # 1: image 1 (0's duplicate), text 101
        (0.6, 0.8, 0),  # 2: image 2, text 100 (the same text as caption 0)
        (0, 1, 0),  # 3: image 2, text 102
        (0.28, 0, 0.96),  # 4: image 3, text 103
        (0, 0.6, 0.8),  # 5: image 3, text 104
    ),
    "caption_image": np.array([0, 1, 2, 2, 3, 3]),
    "image_group": np.array([7, 7, 8, 9]),
    "caption_text_group": np.array([100, 101, 100, 102, 103, 104]),
}


@pytest.mark.parametrize("screen", SCREENS)
def test_hand_case_excludes_cluster_and_own_text(screen: str) -> None:
    # Image 0 scores caption 0 (its own) 1.0, caption 1 (its duplicate's) 0.8 and caption 2 0.6,
    # but caption 2 has the text of caption 0. What is left: caption 4 (0.28), then captions 3 and
    # 5 tied at 0, the lower index first.
    mined = mine_hard_negatives(**HAND, k=3, margin=math.inf, screen=screen)
    got = proposals(mined)
    assert got[0] == [4, 3, 5]
    # Image 1 is in the same group: the same exclusions, whatever its own scores.
    assert got[1][0] == 4 and set(got[1]) == {3, 4, 5}
    # Image 2 (0, 1, 0): its own texts are 100 and 102, so caption 0 (text 100) is out as well;
    # caption 1 (0.6) and caption 5 (0.6) tie, then caption 4 (0).
    assert got[2] == [1, 5, 4]
    assert mined.score[mined.image_index == 2] == pytest.approx([0.6, 0.6, 0.0], abs=1e-6)
    for image, captions in got.items():
        own_group = HAND["image_group"][image]
        assert all(HAND["image_group"][HAND["caption_image"][c]] != own_group for c in captions)


@pytest.mark.parametrize("screen", SCREENS)
def test_margin_caps_candidates_above_the_best_own_positive(screen: str) -> None:
    image_emb = unit((1, 0, 0), (1, 0, 0), (0, 0, 1), (0, 0, 1))
    caption_emb = unit(
        (0.6, 0.8, 0),  # 0: image 0's own caption, scores 0.6 for it
        (1, 0, 0),  # 1: image 2, scores 1.0 for image 0
        (0.8, 0, 0.6),  # 2: image 2, 0.8
        (0.28, 0.96, 0),  # 3: image 3, 0.28
    )
    common = {
        "image_emb": image_emb,
        "caption_emb": caption_emb,
        "caption_image": np.array([0, 2, 2, 3]),
        "image_group": np.array([0, 1, 2, 3]),  # image 1 has no caption: no cap
        "caption_text_group": np.array([0, 1, 2, 3]),
        "k": 3,
        "screen": screen,
    }
    best = best_own_positive(
        image_emb=image_emb,
        caption_emb=caption_emb,
        caption_image=common["caption_image"],
        image_group=common["image_group"],
    )
    assert best[0] == pytest.approx(0.6, abs=1e-6)
    assert best[1] == -np.inf
    # 0.6 + 0.3 = 0.9 keeps 0.8 and drops 1.0.
    got = proposals(mine_hard_negatives(**common, margin=0.3))
    assert got[0] == [2, 3]
    # Image 1 has no own caption, so no cap: 1.0, 0.8, then image 0's caption (0.6).
    assert got[1] == [1, 2, 0]
    # 0.6 + 0.1 = 0.7 drops both.
    assert proposals(mine_hard_negatives(**common, margin=0.1))[0] == [3]
    # A negative margin is allowed: even the 0.28 caption is above 0.6 - 0.4.
    assert 0 not in proposals(mine_hard_negatives(**common, margin=-0.4))
    assert proposals(mine_hard_negatives(**common, margin=math.inf))[0] == [1, 2, 3]


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize(("seed", "k", "margin"), [(0, 5, 0.1), (1, 1, math.inf), (2, 12, 0.0)])
def test_matches_brute_force_reference(screen: str, seed: int, k: int, margin: float) -> None:
    problem = random_problem(seed)
    mined = mine_hard_negatives(**problem, k=k, margin=margin, screen=screen, caption_chunk=32)
    assert proposals(mined) == reference(**problem, k=k, margin=margin)
    # Sorted by image then rank, ranks 0.. within each image, scores descending.
    order = np.lexsort((mined.rank, mined.image_index))
    assert np.array_equal(order, np.arange(len(mined)))
    for image in np.unique(mined.image_index):
        mine = mined.image_index == image
        assert np.array_equal(mined.rank[mine], np.arange(mine.sum()))
        assert np.all(np.diff(mined.score[mine]) <= 0)
        assert mine.sum() <= k
    expected = np.einsum(
        "nd,nd->n",
        problem["image_emb"][mined.image_index].astype(np.float64),
        problem["caption_emb"][mined.caption_index].astype(np.float64),
    )
    np.testing.assert_allclose(mined.score, expected, atol=1e-5)


@pytest.mark.parametrize("screen", SCREENS)
def test_blocks_and_chunks_do_not_change_the_result(screen: str) -> None:
    problem = random_problem(3, images=50, captions=600)
    whole = mine_hard_negatives(
        **problem, k=6, margin=0.15, screen=screen, image_block=50, caption_chunk=600
    )
    assert proposals(whole) == reference(**problem, k=6, margin=0.15)
    # Chunks of a multiple of 64 columns take the segment-maximum path for hits, others a plain
    # comparison; a slack of 40 leaves lists unfilled after the first 8-column chunk.
    for block, chunk, slack in [(5, 7, 1), (7, 13, 3), (16, 128, 16), (49, 599, 5), (50, 8, 40)]:
        parts = mine_hard_negatives(
            **problem,
            k=6,
            margin=0.15,
            screen=screen,
            image_block=block,
            caption_chunk=chunk,
            slack=slack,
        )
        assert np.array_equal(parts.image_index, whole.image_index)
        assert np.array_equal(parts.caption_index, whole.caption_index)
        assert np.array_equal(parts.rank, whole.rank)
        np.testing.assert_allclose(parts.score, whole.score, atol=1e-6)


@pytest.mark.parametrize("screen", SCREENS)
def test_screen_error_bound_holds_for_this_machines_matrix_product(screen: str) -> None:
    # The bf16 certificate is only as good as this bound: |float32 score - screen score| <=
    # rounding * |screen score| + error[row], checked against float64 on every pair.
    generator = torch.Generator().manual_seed(6)
    images = torch.nn.functional.normalize(torch.randn(64, 512, generator=generator), dim=1)
    captions = torch.nn.functional.normalize(torch.randn(300, 512, generator=generator), dim=1)
    captions[:10] *= 3  # not every caption is normalised: the bound uses the measured norms
    captions_screen = captions.to(torch.bfloat16) if screen == "bfloat16" else captions
    norm_max, error_max = _caption_bounds(
        captions, captions_screen if screen == "bfloat16" else None
    )
    query, error, rounding = _screen_bound(
        images, screen=screen, caption_norm_max=norm_max, caption_error_max=error_max
    )
    out = torch.mm(query, captions_screen.T).double()
    exact = images.double() @ captions.double().T
    assert bool(((exact - out).abs() <= rounding * out.abs() + error.double()[:, None]).all())
    # Tight enough to certify most images: well under the gaps between top scores.
    assert float(error.max()) < (0.02 if screen == "bfloat16" else 1e-3)


def test_near_ties_the_bf16_screen_cannot_separate_are_rechecked_in_float32() -> None:
    # Twenty captions that differ by about 1e-4 in score: far below bf16 resolution.
    rng = np.random.default_rng(5)
    base = unit((1, 1, 0, 0))
    caption_emb = base + 1e-4 * rng.standard_normal((20, 4)).astype(np.float32)
    caption_emb /= np.linalg.norm(caption_emb, axis=1, keepdims=True)
    problem = {
        "image_emb": unit((1, 0.9, 0.1, 0)),
        "caption_emb": caption_emb.astype(np.float32),
        "caption_image": np.zeros(20, dtype=np.int64),
        "image_group": np.array([0]),
        "caption_text_group": np.arange(20),
    }
    # Give the captions to a second, unrelated image so that image 0 may propose them.
    problem["image_emb"] = np.vstack([problem["image_emb"], unit((0, 0, 0, 1))])
    problem["caption_image"] = np.ones(20, dtype=np.int64)
    problem["image_group"] = np.array([0, 1])
    fast = mine_hard_negatives(**problem, k=3, margin=math.inf, slack=2)
    exact = mine_hard_negatives(**problem, k=3, margin=math.inf, slack=2, screen="float32")
    assert fast.rechecked >= 1
    assert proposals(fast) == proposals(exact) == reference(**problem, k=3, margin=math.inf)


def test_inputs_as_torch_tensors_and_given_helpers() -> None:
    problem = random_problem(4)
    own = own_text_group_matrix(
        caption_image=problem["caption_image"],
        caption_text_group=problem["caption_text_group"],
        image_group=problem["image_group"],
    )
    best = best_own_positive(
        image_emb=problem["image_emb"],
        caption_emb=problem["caption_emb"],
        caption_image=problem["caption_image"],
        image_group=problem["image_group"],
    )
    as_tensors = {name: torch.from_numpy(value) for name, value in problem.items()}
    mined = mine_hard_negatives(
        **as_tensors, k=4, margin=0.2, own_text_groups=own, best_positive=best
    )
    assert proposals(mined) == reference(**problem, k=4, margin=0.2)


def test_own_text_group_matrix_pads_and_shares_within_groups() -> None:
    own = own_text_group_matrix(
        caption_image=np.array([0, 0, 1, 2, 2, 0]),
        caption_text_group=np.array([5, 3, 9, 4, 4, 5]),
        image_group=np.array([10, 11, 10, 12]),
    )
    # Images 0 and 2 share group 10: texts {3, 5} of image 0 and {4} of image 2. Image 1 has {9};
    # image 3 has no caption at all.
    assert own.tolist() == [[3, 4, 5], [9, -1, -1], [3, 4, 5], [-1, -1, -1]]


def test_best_own_positive_takes_the_group_maximum() -> None:
    best = best_own_positive(
        image_emb=unit((1, 0), (0, 1), (1, 1)),
        caption_emb=unit((1, 0), (0, 1), (1, 1)),
        caption_image=np.array([0, 1, 1]),
        image_group=np.array([0, 0, 2]),
    )
    # Images 0 and 1 share group 0, whose captions are all three; image 2 has none.
    np.testing.assert_allclose(best[:2], [1.0, 1.0], atol=1e-6)
    assert best[2] == -np.inf


@pytest.mark.parametrize("screen", SCREENS)
def test_empty_inputs_give_no_proposals(screen: str) -> None:
    no_images = mine_hard_negatives(
        image_emb=np.zeros((0, 4), np.float32),
        caption_emb=np.zeros((0, 4), np.float32),
        caption_image=np.zeros(0, np.int64),
        image_group=np.zeros(0, np.int64),
        caption_text_group=np.zeros(0, np.int64),
        k=5,
        margin=0.1,
        screen=screen,
    )
    assert len(no_images) == 0 and no_images.score.dtype == np.float32
    no_captions = mine_hard_negatives(
        image_emb=unit((1, 0, 0, 0)),
        caption_emb=np.zeros((0, 4), np.float32),
        caption_image=np.zeros(0, np.int64),
        image_group=np.zeros(1, np.int64),
        caption_text_group=np.zeros(0, np.int64),
        k=5,
        margin=0.1,
        screen=screen,
    )
    assert len(no_captions) == 0
    assert len(mine_hard_negatives(**HAND, k=0, margin=0.1, screen=screen)) == 0
    # Only own captions: nothing is eligible.
    only_own = {**HAND, "caption_image": np.zeros(6, np.int64)}
    assert 0 not in proposals(mine_hard_negatives(**only_own, k=3, margin=1.0, screen=screen))


def test_more_k_than_captions_gives_every_eligible_caption() -> None:
    got = proposals(mine_hard_negatives(**HAND, k=50, margin=math.inf))
    assert got[0] == [4, 3, 5]
    assert got == reference(**HAND, k=50, margin=math.inf)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"caption_emb": np.zeros((6, 2), np.float32)}, ERROR_EMBEDDING_SHAPE),
        ({"caption_text_group": np.zeros(5, np.int64)}, ERROR_CAPTION_SHAPE),
        ({"caption_image": np.array([0, 1, 2, 2, 3, 4])}, ERROR_CAPTION_IMAGE_RANGE),
        ({"k": -1}, ERROR_K),
        ({"margin": math.nan}, ERROR_MARGIN),
        ({"screen": "int8"}, ERROR_SCREEN),
        ({"caption_text_group": np.array([0, 1, 2, 3, 4, -1])}, ERROR_TEXT_GROUP),
    ],
)
def test_invalid_arguments_are_refused(change: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {**HAND, "k": 2, "margin": 0.1, **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        mine_hard_negatives(**arguments)  # type: ignore[arg-type]
