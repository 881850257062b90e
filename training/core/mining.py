"""Hard-negative mining: for each image, the top-k captions of *other* images by model score.

Pure numpy/PyTorch (no Django). The proposals are candidates for people to verify, so the rules
below keep out what is certainly or very likely a match rather than a negative.

Inputs, with N images, M captions and embedding size d:

- ``image_emb``: float32 [N, d] and ``caption_emb``: float32 [M, d], L2-normalised (numpy arrays or
  torch tensors); the score of a pair is their dot product (the cosine).
- ``caption_image``: int64 [M], row in ``image_emb`` of the image each caption belongs to.
- ``image_group``: int64 [N], duplicate-cluster id of each image (near-duplicates share an id, a
  singleton has its own). An image's *own* captions are the captions of every image of its group.
- ``caption_text_group``: int64 [M], id of the caption's normalised-text group (captions with equal
  or nearly equal normalised text share an id; the caller computes the groups).
- ``own_text_groups``: int64 [N, G], the text groups of each image's own captions, padded with -1
  (see :func:`own_text_group_matrix`, which derives it from the three arrays above).

A caption is never proposed for an image when it belongs to an image of the same group (the image
itself included), when its text group is one of the image's own text groups, or when it scores more
than ``margin`` above the image's best own positive (:func:`best_own_positive`; an image without
own captions has no such cap). Scores above that are more likely unlabelled matches or errors than
hard negatives.

How it scales (N = 100,000, M = 500,000, d = 512 is 5e13 multiply-adds, the whole cost): images
are taken in blocks and captions in chunks, one matrix product per tile. Exclusions are applied
inside each tile, by index, so that a tile's top candidates are already eligible and no slack is
wasted on them. A running top-(k + slack) per image is kept; after the first tile of a block only
the few scores above an image's current (k + slack)-th best are looked at: the selection costs one
read per score (the maximum of each 64-score segment) instead of a sort.

Exact results from a bfloat16 screen: on CPUs with bfloat16 instructions a bf16 matrix product is
about twice as fast as float32 (on the two-core EPYC here, ~300 against ~130 GFLOPS), which is what
brings the benchmark under ten minutes. The bf16 scores only *screen*: the kept candidates are
rescored in float32, and each image's result is certified with a bound on the bf16 error (input
rounding measured per vector, float32 accumulation, bf16 rounding of the output; it assumes the
product accumulates in float32 and rounds to nearest, which the tests check on the machine). An
image whose k-th float32 score is not clear of the bound over the best score it did not keep (a
near-tie at the boundary: about 1% of the images in the benchmark at d = 512) is mined again in
float32. The result equals a plain float32 search up to float32 rounding and the order among
exactly tied scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Array = np.ndarray | torch.Tensor
Screen = Literal["bfloat16", "float32"]

IMAGE_BLOCK_DEFAULT = 4096
CAPTION_CHUNK_DEFAULT = 8192
# Pairs rescored at once: their [pairs, d] float32 gathers stay cache-sized.
RESCORE_PAIRS = 4096
# Caption rows whose norms are measured at once.
NORM_ROWS = 65536

ERROR_EMBEDDING_SHAPE = "image_emb and caption_emb must be 2-D with the same number of columns"
ERROR_CAPTION_SHAPE = "caption_image and caption_text_group must have one entry per caption"
ERROR_IMAGE_SHAPE = "image_group must have one entry per image"
ERROR_OWN_TEXT_SHAPE = "own_text_groups must be a 2-D array with one row per image"
ERROR_BEST_POSITIVE_SHAPE = "best_positive must have one entry per image"
ERROR_CAPTION_IMAGE_RANGE = "caption_image holds a row outside image_emb"
ERROR_TEXT_GROUP = "caption_text_group ids must be non-negative (-1 pads own_text_groups)"
ERROR_K = "k must be a non-negative integer"
ERROR_SIZES = "image_block, caption_chunk and slack must be positive integers"
ERROR_MARGIN = "margin must be a number or infinity, not NaN"
ERROR_SCREEN = "screen must be 'bfloat16' or 'float32'"

# Unit roundoff of bfloat16 (8 significant bits, round to nearest): |fl(x) - x| <= 2^-8 |x|.
_BF16_ROUNDOFF = 2.0**-8
_FP32_ROUNDOFF = 2.0**-24


@dataclass(frozen=True)
class MinedNegatives:
    """Proposals, sorted by image then rank; at most ``k`` per image (fewer where fewer captions
    are eligible). ``rechecked`` counts the images whose screen was inconclusive and that were
    mined again in float32 (a cost figure, not part of the result)."""

    image_index: np.ndarray  # int64 [P], row in image_emb
    caption_index: np.ndarray  # int64 [P], row in caption_emb
    score: np.ndarray  # float32 [P], dot product in float32
    rank: np.ndarray  # int64 [P], 0 = the image's highest-scoring proposal
    rechecked: int = 0

    def __len__(self) -> int:
        return len(self.image_index)


def _empty() -> MinedNegatives:
    none = np.zeros(0, dtype=np.int64)
    return MinedNegatives(none, none.copy(), np.zeros(0, dtype=np.float32), none.copy())


def _index_array(values: Array) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.ascontiguousarray(values, dtype=np.int64)


def _float_tensor(values: Array, device: torch.device) -> torch.Tensor:
    # from_numpy shares memory for float32 inputs: no copy of the 1 GB caption matrix on CPU.
    tensor = (
        torch.as_tensor(values)
        if isinstance(values, torch.Tensor)
        else torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    )
    return tensor.to(device=device, dtype=torch.float32).contiguous()


def _expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start, start + count)`` for each pair, without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)


class _KeyIndex:
    """Captions sorted by a key (text group, or the group of their image), to list the captions
    that share a key with each of many queries in one vectorised join."""

    def __init__(self, keys: np.ndarray) -> None:
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]

    def join(self, rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, caption) for every query (row, key) and every caption with that key."""
        starts = np.searchsorted(self.sorted_keys, keys, side="left")
        counts = np.searchsorted(self.sorted_keys, keys, side="right") - starts
        return np.repeat(rows, counts), self.order[_expand_ranges(starts, counts)]


def own_text_group_matrix(
    *, caption_image: Array, caption_text_group: Array, image_group: Array
) -> np.ndarray:
    """int64 [N, G]: the distinct text groups of each image's own captions (the captions of every
    image in its duplicate group), ascending, padded with -1; G is the largest count over groups,
    so memory is N x G x 8 bytes (a group of many duplicates with many captions makes G large)."""
    caption_image = _index_array(caption_image)
    caption_text_group = _index_array(caption_text_group)
    image_group = _index_array(image_group)
    if caption_image.shape != caption_text_group.shape or caption_image.ndim != 1:
        raise ValueError(ERROR_CAPTION_SHAPE)
    groups, image_to_group = np.unique(image_group, return_inverse=True)
    if len(caption_image) == 0:
        return np.full((len(image_group), 0), -1, dtype=np.int64)
    if caption_image.min() < 0 or caption_image.max() >= len(image_group):
        raise ValueError(ERROR_CAPTION_IMAGE_RANGE)
    # Distinct (group, text group) pairs, sorted by group then text group.
    pairs = np.unique(np.stack([image_to_group[caption_image], caption_text_group], 1), axis=0)
    counts = np.bincount(pairs[:, 0], minlength=len(groups))
    position = np.arange(len(pairs)) - (np.cumsum(counts) - counts)[pairs[:, 0]]
    by_group = np.full((len(groups), int(counts.max())), -1, dtype=np.int64)
    by_group[pairs[:, 0], position] = pairs[:, 1]
    return by_group[image_to_group]


def _pair_scores(
    images: torch.Tensor, captions: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Float32 dot products of pairs, computed the same way everywhere (elementwise product then
    a sum over d), so a pair's reported score does not depend on block or chunk sizes."""
    out = torch.empty(len(rows), dtype=torch.float32, device=images.device)
    for start in range(0, len(rows), RESCORE_PAIRS):
        part = slice(start, start + RESCORE_PAIRS)
        out[part] = (images[rows[part]] * captions[cols[part]]).sum(-1)
    return out


def best_own_positive(
    *,
    image_emb: Array,
    caption_emb: Array,
    caption_image: Array,
    image_group: Array,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """float32 [N]: each image's highest score over its own captions (those of every image in its
    duplicate group), -inf for an image whose group has no caption."""
    device = torch.device(device or "cpu")
    images = _float_tensor(image_emb, device)
    captions = _float_tensor(caption_emb, device)
    caption_image = _index_array(caption_image)
    image_group = _index_array(image_group)
    n = images.shape[0]
    best = torch.full((n,), float("-inf"), dtype=torch.float32, device=device)
    if n == 0 or len(caption_image) == 0:
        return best.cpu().numpy()
    by_group = _KeyIndex(image_group[caption_image])
    # Images in slices so the (image, own caption) pairs stay small even with large groups.
    for start in range(0, n, 16384):
        rows = np.arange(start, min(n, start + 16384))
        pair_rows, pair_cols = by_group.join(rows, image_group[rows])
        if len(pair_rows) == 0:
            continue
        rows_t = torch.from_numpy(pair_rows).to(device)
        scores = _pair_scores(images, captions, rows_t, torch.from_numpy(pair_cols).to(device))
        best.scatter_reduce_(0, rows_t, scores, reduce="amax")
    return best.cpu().numpy()


@dataclass
class _Search:
    """What every block needs: embeddings on the device, the exclusion joins, per-image caps."""

    images: torch.Tensor  # float32 [N, d]
    captions: torch.Tensor  # float32 [M, d]
    captions_bf16: torch.Tensor | None  # bf16 copy for the screen, made once
    image_group: np.ndarray
    own_text: np.ndarray  # [N, G]
    by_text: _KeyIndex
    by_image_group: _KeyIndex
    cap: torch.Tensor  # float32 [N]: best own positive + margin, +inf without own captions
    caption_norm_max: float
    caption_bf16_error_max: float  # max over captions of ||y - bf16(y)||
    chunk: int

    def excluded_pairs(self, rows: np.ndarray) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
        """(block row, caption) pairs never to propose for the block's images, sorted by caption:
        captions of the same image group and captions sharing an own text group. Their number is
        about the own captions of the block, more when a text group is very common."""
        local = np.arange(len(rows), dtype=np.int64)
        own = self.own_text[rows]
        present = own >= 0
        text_rows, text_cols = self.by_text.join(
            np.broadcast_to(local[:, None], own.shape)[present], own[present]
        )
        group_rows, group_cols = self.by_image_group.join(local, self.image_group[rows])
        block_rows = np.concatenate([text_rows, group_rows])
        cols = np.concatenate([text_cols, group_cols])
        order = np.argsort(cols, kind="stable")
        device = self.images.device
        return (
            torch.from_numpy(block_rows[order]).to(device),
            cols[order],
            torch.from_numpy(cols[order]).to(device),
        )


def _ordered_bits(tensor: torch.Tensor) -> torch.Tensor:
    """The float tensor's bits as signed integers. For a threshold >= +0.0, ``bits(s) >
    bits(t)`` iff ``s > t``: negative floats (-inf, the excluded pairs, included) have the sign bit
    set and compare below. Integer comparisons and maxima skip the bf16-to-float conversions that
    make the float ones several times slower on CPU."""
    return tensor.view(torch.int16 if tensor.dtype == torch.bfloat16 else torch.int32)


# Columns per segment when looking for hits: the maximum of each segment is one cheap read-only
# pass (a reduction over contiguous memory, ~10x cheaper than a comparison writing a [B, C]
# mask), and only the few segments above the threshold are compared element by element.
_SEGMENT = 64


def _sparse_nonzero(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask.nonzero(as_tuple=True)`` for a sparse 2-D bool mask, in row-major order: the
    non-zero 8-byte words first, then the bytes inside them (nonzero over every byte is slow)."""
    rows, width = mask.shape
    if width % 8 or not mask.is_contiguous():
        return mask.nonzero(as_tuple=True)
    word_rows, words = mask.view(torch.int64).nonzero(as_tuple=True)
    which, byte = mask.view(rows, width // 8, 8)[word_rows, words].nonzero(as_tuple=True)
    return word_rows[which], words[which] * 8 + byte


def _hits(scores: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of the scores above their row's threshold, in row-major order."""
    rows, width = scores.shape
    if (
        width % _SEGMENT
        or not scores.is_contiguous()
        or not bool((_ordered_bits(threshold) >= 0).all())
    ):
        return (scores > threshold[:, None]).nonzero(as_tuple=True)
    bits = _ordered_bits(scores).view(rows, width // _SEGMENT, _SEGMENT)
    limit = _ordered_bits(threshold)
    segment_rows, segments = _sparse_nonzero(bits.amax(2) > limit[:, None])
    which, column = _sparse_nonzero(bits[segment_rows, segments] > limit[segment_rows, None])
    return segment_rows[which], segments[which] * _SEGMENT + column


def _merge(
    kept_values: torch.Tensor,
    kept_cols: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    values: torch.Tensor,
) -> None:
    """Merge new (row, col, value) candidates, sorted by row, into each row's kept top list."""
    if len(rows) == 0:
        return
    touched, counts = torch.unique_consecutive(rows, return_counts=True)
    slot = torch.repeat_interleave(torch.arange(len(touched), device=rows.device), counts)
    position = (
        torch.arange(len(rows), device=rows.device) - (torch.cumsum(counts, 0) - counts)[slot]
    )
    width = int(counts.max())
    new_values = torch.full(
        (len(touched), width), float("-inf"), dtype=torch.float32, device=rows.device
    )
    new_cols = torch.full((len(touched), width), -1, dtype=torch.int64, device=rows.device)
    new_values[slot, position] = values.float()
    new_cols[slot, position] = cols
    all_values = torch.cat([kept_values[touched], new_values], 1)
    all_cols = torch.cat([kept_cols[touched], new_cols], 1)
    top_values, top = torch.topk(all_values, kept_values.shape[1], dim=1)
    kept_values[touched] = top_values
    kept_cols[touched] = all_cols.gather(1, top)


def _caption_bounds(
    captions: torch.Tensor, captions_bf16: torch.Tensor | None
) -> tuple[float, float]:
    """(largest caption norm, largest norm of a caption's bf16 rounding error; 0 without bf16)."""
    norm_max = error_max = 0.0
    for start in range(0, captions.shape[0], NORM_ROWS):
        part = captions[start : start + NORM_ROWS]
        norm_max = max(norm_max, float(part.norm(dim=1).max()))
        if captions_bf16 is not None:
            rounded = captions_bf16[start : start + NORM_ROWS].float()
            error_max = max(error_max, float((part - rounded).norm(dim=1).max()))
    return norm_max, error_max


def _screen_bound(
    images: torch.Tensor, *, screen: Screen, caption_norm_max: float, caption_error_max: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The images in the screen's type, and how far a screen score ``out`` can be from the
    float32 score ``s``: ``|s - out| <= rounding * |out| + error[row]`` for every caption.

    bf16: |x.y - bf16(x).bf16(y)| <= |dx||y| + |x||dy| + |dx||dy| (Cauchy-Schwarz), with the
    rounding errors dx, dy measured per vector rather than taken at their worst; float32
    accumulation of the product and of the float32 rescoring (d * 2^-24 each, relative to the
    norms); and the rounding of the product's output to bf16 (2^-8 relative, doubled for safety).
    """
    norms = images.norm(dim=1)
    d = images.shape[1]
    gamma = d * _FP32_ROUNDOFF / (1 - d * _FP32_ROUNDOFF)
    if screen == "bfloat16":
        query = images.to(torch.bfloat16)
        query_error = (images - query.float()).norm(dim=1)
        y_max, dy_max = caption_norm_max, caption_error_max
        error = query_error * y_max + norms * dy_max + query_error * dy_max
        error += 2 * gamma * (norms + query_error) * (y_max + dy_max)
        rounding = 2 * _BF16_ROUNDOFF
    else:
        query = images
        error = 2 * gamma * norms * caption_norm_max
        rounding = 0.0
    return query, error + 1e-7, rounding


def _scan(
    search: _Search, rows: np.ndarray, *, screen: Screen, keep: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Screen every caption for the images ``rows``: the ``keep`` best screen scores per image
    among captions that are not excluded and not certainly above the cap, with a per-image bound
    on how far a float32 score can lie above its screen score.

    Returns (kept screen scores as float32 [B, keep], descending, -inf where empty; their caption
    indices, -1 where empty; a bound [B] such that a caption not kept has a float32 score at most
    the last kept screen score plus the bound; the images as float32 [B, d]).
    """
    device = search.images.device
    images = search.images[torch.from_numpy(rows).to(device)]
    query, error, output_rounding = _screen_bound(
        images,
        screen=screen,
        caption_norm_max=search.caption_norm_max,
        caption_error_max=search.caption_bf16_error_max,
    )
    captions = search.captions_bf16 if screen == "bfloat16" else search.captions
    assert captions is not None
    # Drop a screen score only when its float32 score is certainly above the cap; the threshold
    # is rounded to the screen type upwards (the extra relative term covers that rounding).
    cap = search.cap[torch.from_numpy(rows).to(device)]
    loose = cap + error
    loose = torch.where(torch.isinf(loose), loose, loose + 2 * output_rounding * loose.abs())
    screen_cap = loose.to(query.dtype)

    count = len(rows)
    kept_values = torch.full((count, keep), float("-inf"), dtype=torch.float32, device=device)
    kept_cols = torch.full((count, keep), -1, dtype=torch.int64, device=device)
    excluded_rows, excluded_cols_np, excluded_cols = search.excluded_pairs(rows)
    neg_inf = torch.tensor(float("-inf"), dtype=query.dtype, device=device)
    total = captions.shape[0]
    # One reused tile: a fresh allocation of this size per product costs page faults every time.
    tile = torch.empty((count, min(search.chunk, total)), dtype=query.dtype, device=device)
    for start in range(0, total, search.chunk):
        stop = min(total, start + search.chunk)
        if stop - start == tile.shape[1]:
            scores = torch.mm(query, captions[start:stop].T, out=tile)
        else:
            scores = torch.mm(query, captions[start:stop].T)
        low, high = np.searchsorted(excluded_cols_np, [start, stop])
        if high > low:
            scores.index_put_((excluded_rows[low:high], excluded_cols[low:high] - start), neg_inf)
        if start == 0:
            # Nothing kept yet: a dense top-k (with the cap) on the first tile.
            scores.masked_fill_(scores > screen_cap[:, None], float("-inf"))
            width = min(keep, stop - start)
            values, cols = torch.topk(scores, width, dim=1)
            kept_values[:, :width] = values.float()
            kept_cols[:, :width] = torch.where(torch.isinf(values), -1, cols + start)
            continue
        # Later tiles: only scores above the row's keep-th best can enter its list.
        threshold = kept_values[:, -1].to(query.dtype)
        hit_rows, hit_cols = _hits(scores, threshold)
        hit_values = scores[hit_rows, hit_cols]
        under_cap = hit_values <= screen_cap[hit_rows]
        _merge(
            kept_values,
            kept_cols,
            hit_rows[under_cap],
            hit_cols[under_cap] + start,
            hit_values[under_cap],
        )
    # A caption not kept has a screen score at most the last kept one, t; its float32 score is
    # then at most t + rounding * |t| + error (where the list is not full, nothing was left out).
    error = error + output_rounding * kept_values[:, -1].abs().nan_to_num(posinf=0.0, neginf=0.0)
    return kept_values, kept_cols, error, images


def _select(
    search: _Search,
    rows: np.ndarray,
    kept_values: torch.Tensor,
    kept_cols: torch.Tensor,
    error: torch.Tensor,
    images: torch.Tensor,
    *,
    k: int,
    certify: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rescore the kept candidates in float32, apply the exact cap, and take the top k (ties by
    lower caption index). Returns (scores [B, k], -inf where empty; captions [B, k], -1 where
    empty; certain [B]: the result provably equals a float32 search's)."""
    device = images.device
    count, keep = kept_cols.shape
    valid = kept_cols >= 0
    flat_rows = torch.arange(count, device=device).repeat_interleave(keep)[valid.ravel()]
    exact = torch.full((count, keep), float("-inf"), dtype=torch.float32, device=device)
    exact[valid] = _pair_scores(images, search.captions, flat_rows, kept_cols[valid])
    cap = search.cap[torch.from_numpy(rows).to(device)]
    exact.masked_fill_(exact > cap[:, None], float("-inf"))
    # Order by caption index, then stably by score: equal scores keep the lower caption first.
    by_caption = torch.sort(kept_cols, dim=1).indices
    exact, cols = exact.gather(1, by_caption), kept_cols.gather(1, by_caption)
    order = torch.sort(exact, dim=1, descending=True, stable=True).indices[:, :k]
    scores, cols = exact.gather(1, order), cols.gather(1, order)
    cols = torch.where(torch.isinf(scores), -1, cols)
    if scores.shape[1] < k:  # keep < k only when there are fewer captions than k
        pad = k - scores.shape[1]
        scores = torch.cat([scores, scores.new_full((count, pad), float("-inf"))], 1)
        cols = torch.cat([cols, cols.new_full((count, pad), -1)], 1)
    if not certify:
        return scores, cols, torch.ones(count, dtype=torch.bool, device=device)
    # A caption that was not kept scored at most the last kept screen score, so its float32 score
    # is at most that plus the error bound; the k-th must beat that. A list that is not full kept
    # every caption under the cap, so it is certain as it is.
    full = torch.isfinite(kept_values[:, -1]) & (keep < search.captions.shape[0])
    bound = kept_values[:, -1] + error
    certain = ~full | (scores[:, -1] > bound)
    return scores, cols, certain


def mine_hard_negatives(
    *,
    image_emb: Array,
    caption_emb: Array,
    caption_image: Array,
    image_group: Array,
    caption_text_group: Array,
    k: int,
    margin: float,
    own_text_groups: Array | None = None,
    best_positive: Array | None = None,
    image_block: int = IMAGE_BLOCK_DEFAULT,
    caption_chunk: int = CAPTION_CHUNK_DEFAULT,
    slack: int | None = None,
    screen: Screen = "bfloat16",
    progress: Callable[[int, int], None] | None = None,
    device: str | torch.device | None = None,
) -> MinedNegatives:
    """The top-``k`` captions of other images for every image, by score, after the exclusions
    described in the module docstring (arrays and shapes there too).

    ``own_text_groups`` and ``best_positive`` are derived when not given
    (:func:`own_text_group_matrix`, :func:`best_own_positive`); the same-group rule applies
    whatever ``own_text_groups`` says. ``margin``: a candidate scoring more than ``margin`` above
    the image's best own positive is dropped; ``math.inf`` disables the cap. ``slack``: extra
    candidates kept per image while screening (default ``max(k, 16)``); more means fewer rechecks
    and a little more merging. ``screen``: ``"bfloat16"`` (fast where the CPU or GPU has bf16
    matrix units, exact after the float32 check) or ``"float32"`` (use it on hardware without
    them). ``progress(done, total)`` is called after each block of images; the float32 recheck of
    inconclusive images runs after the last call. Memory: the inputs (float32 inputs are not
    copied on CPU), a bf16 copy of the captions, the [N, k] results, and per block a tile of
    ``image_block x caption_chunk`` screen scores (64 MB at the defaults) plus small lists; a text
    group shared by very many captions adds (image, caption) exclusion pairs per block.
    Thread count: torch's (all cores unless the caller set it).
    """
    device = torch.device(device or "cpu")
    caption_image = _index_array(caption_image)
    image_group = _index_array(image_group)
    caption_text_group = _index_array(caption_text_group)
    images = _float_tensor(image_emb, device)
    captions = _float_tensor(caption_emb, device)
    if images.ndim != 2 or captions.ndim != 2 or images.shape[1] != captions.shape[1]:
        raise ValueError(ERROR_EMBEDDING_SHAPE)
    n, m = images.shape[0], captions.shape[0]
    if caption_image.shape != (m,) or caption_text_group.shape != (m,):
        raise ValueError(ERROR_CAPTION_SHAPE)
    if image_group.shape != (n,):
        raise ValueError(ERROR_IMAGE_SHAPE)
    if m and (caption_image.min() < 0 or caption_image.max() >= n):
        raise ValueError(ERROR_CAPTION_IMAGE_RANGE)
    if m and caption_text_group.min() < 0:
        raise ValueError(ERROR_TEXT_GROUP)
    if not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(ERROR_K)
    slack = max(int(k), 16) if slack is None else slack
    if min(image_block, caption_chunk, slack) < 1:
        raise ValueError(ERROR_SIZES)
    if math.isnan(margin):
        raise ValueError(ERROR_MARGIN)
    if screen not in ("bfloat16", "float32"):
        raise ValueError(ERROR_SCREEN)
    if own_text_groups is None:
        own = own_text_group_matrix(
            caption_image=caption_image,
            caption_text_group=caption_text_group,
            image_group=image_group,
        )
    else:
        own = _index_array(own_text_groups)
        if own.ndim != 2 or own.shape[0] != n:
            raise ValueError(ERROR_OWN_TEXT_SHAPE)
    if best_positive is None:
        best = best_own_positive(
            image_emb=images,
            caption_emb=captions,
            caption_image=caption_image,
            image_group=image_group,
            device=device,
        )
    else:
        best = np.asarray(
            best_positive.cpu() if isinstance(best_positive, torch.Tensor) else best_positive,
            dtype=np.float32,
        )
        if best.shape != (n,):
            raise ValueError(ERROR_BEST_POSITIVE_SHAPE)
    if n == 0 or m == 0 or k == 0:
        return _empty()

    # Images without own captions (best = -inf) have no cap.
    cap_values = np.full(n, np.inf, dtype=np.float32)
    has_own = np.isfinite(best)
    cap_values[has_own] = best[has_own] + np.float32(margin)
    cap = torch.from_numpy(cap_values).to(device)
    captions_bf16 = captions.to(torch.bfloat16) if screen == "bfloat16" else None
    caption_norm_max, caption_error_max = _caption_bounds(captions, captions_bf16)
    search = _Search(
        images=images,
        captions=captions,
        captions_bf16=captions_bf16,
        image_group=image_group,
        own_text=own,
        by_text=_KeyIndex(caption_text_group),
        by_image_group=_KeyIndex(image_group[caption_image]),
        cap=cap,
        caption_norm_max=caption_norm_max,
        caption_bf16_error_max=caption_error_max,
        chunk=caption_chunk,
    )
    keep = min(k + slack, m)
    top_scores = torch.full((n, k), float("-inf"), dtype=torch.float32, device=device)
    top_cols = torch.full((n, k), -1, dtype=torch.int64, device=device)
    uncertain: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, n, image_block):
            rows = np.arange(start, min(n, start + image_block), dtype=np.int64)
            kept_values, kept_cols, error, block = _scan(search, rows, screen=screen, keep=keep)
            scores, cols, certain = _select(
                search,
                rows,
                kept_values,
                kept_cols,
                error,
                block,
                k=k,
                certify=screen == "bfloat16",
            )
            top_scores[start : rows[-1] + 1] = scores
            top_cols[start : rows[-1] + 1] = cols
            uncertain.append(rows[~certain.cpu().numpy()])
            if progress is not None:
                progress(int(rows[-1]) + 1, n)
        recheck = np.concatenate(uncertain)
        for start in range(0, len(recheck), image_block):
            rows = recheck[start : start + image_block]
            kept_values, kept_cols, error, block = _scan(search, rows, screen="float32", keep=keep)
            scores, cols, _ = _select(
                search, rows, kept_values, kept_cols, error, block, k=k, certify=False
            )
            rows_t = torch.from_numpy(rows).to(device)
            top_scores[rows_t] = scores
            top_cols[rows_t] = cols

    # Each row's proposals are a prefix (best first), so rank is the column.
    valid = (top_cols >= 0).cpu().numpy()
    image_index, rank = np.nonzero(valid)
    return MinedNegatives(
        image_index=image_index.astype(np.int64),
        caption_index=top_cols.cpu().numpy()[valid],
        score=top_scores.cpu().numpy()[valid],
        rank=rank.astype(np.int64),
        rechecked=len(recheck),
    )
