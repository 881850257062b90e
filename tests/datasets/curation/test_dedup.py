"""Perceptual hashing, exact near-duplicate search and clustering with manager decisions."""

import io
import random

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw

from datasets.curation import dedup
from datasets.curation.dedup import (
    ERROR_DUPLICATE_IDS,
    ERROR_IDS_ALREADY_INDEXED,
    PHASH_THRESHOLD_DEFAULT,
    Cluster,
    HammingIndex,
    HashPair,
    brute_force_pairs,
    clusters_build,
    hamming_distance,
    hash_from_signed,
    hash_to_signed,
    image_hashes,
    image_hashes_from_file,
    near_duplicate_pairs,
    pairs_confirm,
)


def _picture(seed: int, size: int = 256) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(size), rng.randrange(size)
        box = (x0, y0, x0 + rng.randrange(20, size // 2), y0 + rng.randrange(20, size // 2))
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return image


def _jpeg(image: Image.Image, quality: int = 90, **save_args) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **save_args)
    buffer.seek(0)
    return buffer


def _random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64, size=n, dtype=np.uint64)


def _flip(rng: np.random.Generator, value: np.uint64, bits: int) -> np.uint64:
    mask = 0
    for bit in rng.choice(64, size=bits, replace=False):
        mask |= 1 << int(bit)
    return value ^ np.uint64(mask)


def _plant(rng: np.random.Generator, hashes: np.ndarray, threshold: int, count: int) -> None:
    """Overwrite hashes with near copies of others, right up to and just past the threshold."""
    slots = rng.permutation(len(hashes))[: 2 * count].reshape(count, 2)
    for k, (source, target) in enumerate(slots):
        # Cycle through distances 0 .. threshold + 1 so the boundary is always exercised.
        bits = min(k % (threshold + 2), 64)
        hashes[target] = _flip(rng, hashes[source], bits)


# --- hashing -------------------------------------------------------------------------------


def test_image_hashes_are_imagehash_values_as_ints():
    image = _picture(1)

    hashes = image_hashes(image=image)

    assert hashes.phash == int(str(imagehash.phash(image)), 16)
    assert hashes.dhash == int(str(imagehash.dhash(image)), 16)
    assert 0 <= hashes.phash < 2**64


def test_resized_and_recompressed_copies_are_within_the_default_threshold():
    original = image_hashes_from_file(file=_jpeg(_picture(2)))
    resized = image_hashes_from_file(file=_jpeg(_picture(2).resize((128, 128))))
    recompressed = image_hashes_from_file(file=_jpeg(_picture(2), quality=30))

    assert hamming_distance(a=original.phash, b=resized.phash) <= PHASH_THRESHOLD_DEFAULT
    assert hamming_distance(a=original.phash, b=recompressed.phash) <= PHASH_THRESHOLD_DEFAULT


def test_distinct_pictures_are_beyond_the_default_threshold():
    hashes = [image_hashes_from_file(file=_jpeg(_picture(seed))).phash for seed in range(10, 20)]

    distances = [hamming_distance(a=a, b=b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]

    assert min(distances) > PHASH_THRESHOLD_DEFAULT


def test_hashing_from_file_applies_exif_orientation():
    upright = _picture(3)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    tagged = _jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())

    from_tagged = image_hashes_from_file(file=tagged)
    from_upright = image_hashes_from_file(file=_jpeg(upright))

    assert hamming_distance(a=from_tagged.phash, b=from_upright.phash) <= 2


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1, 2**63, 2**64 - 1])
def test_signed_storage_round_trips(value):
    stored = hash_to_signed(value=value)

    assert -(2**63) <= stored < 2**63
    assert hash_from_signed(value=stored) == value


# --- pair search ---------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0, 2, 5, 8, 12])
def test_fast_search_finds_exactly_the_brute_force_pairs(threshold):
    rng = np.random.default_rng(threshold)
    hashes = _random_hashes(rng, 6000)
    _plant(rng, hashes, threshold, count=300)
    ids = rng.permutation(100_000)[:6000]

    index = HammingIndex.build(ids=ids, hashes=hashes, threshold=threshold)
    found = index.pairs()

    assert not index.uses_brute_force
    assert found == brute_force_pairs(ids=ids, hashes=hashes, threshold=threshold)
    assert sum(p.distance == threshold for p in found) >= 300 // (threshold + 2)


def test_fast_search_is_exact_on_crowded_buckets(monkeypatch):
    # Real pHashes share many bits; here only 14 bits vary, so buckets hold hundreds, and
    # small rounds make the search cut their expansion into many batches.
    monkeypatch.setattr(dedup, "_PROBE_CHUNK", 20_000)
    rng = np.random.default_rng(7)
    base = np.uint64(0x9F3C_55AA_0F0F_1234)
    noise = rng.integers(0, 2**14, size=3000, dtype=np.uint64) << np.uint64(25)
    hashes = np.unique(base ^ noise)
    ids = np.arange(len(hashes))

    index = HammingIndex.build(ids=ids, hashes=hashes, threshold=3)
    found = index.pairs()

    assert not index.uses_brute_force
    assert len(found) > 1000
    assert found == brute_force_pairs(ids=ids, hashes=hashes, threshold=3)


def test_identical_hashes_pair_at_distance_zero():
    found = near_duplicate_pairs(ids=[5, 3, 9], hashes=[2**64 - 1, 2**64 - 1, 0], threshold=4)

    assert found == (HashPair(a=3, b=5, distance=0),)


def test_extend_returns_only_new_pairs_and_grows_the_index():
    rng = np.random.default_rng(11)
    hashes = _random_hashes(rng, 8000)
    _plant(rng, hashes, 8, count=400)
    ids = np.arange(1, 8001)
    full = near_duplicate_pairs(ids=ids, hashes=hashes, threshold=8)

    old = HammingIndex.build(ids=ids[:6000], hashes=hashes[:6000], threshold=8)
    grown, new_pairs = old.extend(ids=ids[6000:], hashes=hashes[6000:])

    assert set(old.pairs()) | set(new_pairs) == set(full)
    assert all(p.b > 6000 for p in new_pairs)
    assert grown.pairs() == full
    assert len(grown) == 8000


def test_query_compares_outside_hashes_with_the_index_only():
    train = HammingIndex.build(ids=[1, 2], hashes=[0b0000, 0b1111], threshold=1)

    pairs = train.query(ids=[10, 11], hashes=[0b0001, 0b0011])

    # 10 and 11 are one bit apart but neither is indexed, so that pair is not reported.
    assert pairs == (HashPair(a=1, b=10, distance=1),)


def test_duplicate_or_already_indexed_ids_are_rejected():
    with pytest.raises(ValueError, match=ERROR_DUPLICATE_IDS):
        HammingIndex.build(ids=[1, 1], hashes=[0, 1])
    index = HammingIndex.build(ids=[1, 2], hashes=[0, 1])
    with pytest.raises(ValueError, match=ERROR_IDS_ALREADY_INDEXED):
        index.extend(ids=[2], hashes=[5])


def test_empty_index_has_no_pairs():
    index = HammingIndex.build(ids=[], hashes=[])

    assert index.pairs() == ()
    assert index.query(ids=[1], hashes=[0]) == ()


def test_pairs_confirm_drops_pairs_whose_second_hash_disagrees():
    pairs = (HashPair(a=1, b=2, distance=2), HashPair(a=1, b=3, distance=4))
    dhashes = {1: 0, 2: 0b111, 3: 2**64 - 1}

    assert pairs_confirm(pairs=pairs, hashes=dhashes, threshold=10) == pairs[:1]


# --- clustering ----------------------------------------------------------------------------


def _pair(a: int, b: int, distance: int = 1) -> HashPair:
    return HashPair(a=min(a, b), b=max(a, b), distance=distance)


def test_union_find_groups_chains_with_lowest_id_canonical():
    pairs = [_pair(3, 7, 2), _pair(7, 9, 5), _pair(20, 21, 0)]

    result = clusters_build(pairs=pairs)

    assert result.clusters == (
        Cluster(canonical=3, members=(3, 7, 9), doubt=5, confirmed=False),
        Cluster(canonical=20, members=(20, 21), doubt=0, confirmed=False),
    )
    assert result.canonical_by_member() == {3: 3, 7: 3, 9: 3, 20: 20, 21: 20}


def test_doubt_from_hashes_reveals_chaining_beyond_the_threshold():
    hashes = {1: 0b0000, 2: 0b0011, 3: 0b1111}
    pairs = [_pair(1, 2, 2), _pair(2, 3, 2)]

    (cluster,) = clusters_build(pairs=pairs, hashes=hashes).clusters

    assert cluster.doubt == 4


def test_clusters_are_ordered_most_doubtful_first_and_confirmed_last():
    pairs = [_pair(1, 2, 1), _pair(3, 4, 6), _pair(5, 6, 3)]

    result = clusters_build(pairs=pairs, must_link=[(3, 4)])

    assert [c.canonical for c in result.clusters] == [5, 1, 3]
    assert result.clusters[-1].confirmed


def test_result_does_not_depend_on_input_order():
    rng = random.Random(0)
    pairs = [_pair(rng.randrange(60), rng.randrange(60), rng.randrange(9)) for _ in range(80)]
    pairs = [p for p in pairs if p.a != p.b]
    cannot = [(1, 2), (5, 40), (7, 8)]
    shuffled = pairs[:]
    rng.shuffle(shuffled)

    assert clusters_build(pairs=pairs, cannot_link=cannot) == clusters_build(
        pairs=shuffled, cannot_link=[(b, a) for a, b in reversed(cannot)]
    )


def test_must_link_joins_images_the_hashes_missed():
    result = clusters_build(pairs=[_pair(1, 2)], must_link=[(2, 50), (60, 61)])

    assert [c.members for c in result.clusters] == [(1, 2, 50), (60, 61)]
    assert [c.confirmed for c in result.clusters] == [False, True]


def test_cannot_link_keeps_split_images_apart_even_through_other_members():
    # 1–2 and 2–3 are near pairs; the manager split 3 from 1, so 3 may not join via 2.
    pairs = [_pair(1, 2, 1), _pair(2, 3, 2), _pair(3, 4, 1)]

    result = clusters_build(pairs=pairs, cannot_link=[(3, 1)])

    assert [c.members for c in result.clusters] == [(1, 2), (3, 4)]


def test_must_link_wins_over_a_contradicting_cannot_link_and_is_reported():
    result = clusters_build(pairs=[], must_link=[(1, 2), (2, 3)], cannot_link=[(3, 1)])

    assert [c.members for c in result.clusters] == [(1, 2, 3)]
    assert result.conflicts == ((1, 3),)


def test_preferred_image_becomes_canonical():
    result = clusters_build(pairs=[_pair(1, 2), _pair(2, 3)], preferred=[3])

    assert result.clusters[0].canonical == 3


def test_decisions_survive_recomputation_with_new_images():
    rng = np.random.default_rng(5)
    hashes = _random_hashes(rng, 4000)
    # Three families of near copies; one image of each will arrive later.
    for family, base in enumerate((0, 1, 2)):
        for k in range(1, 5):
            hashes[base * 10 + k] = _flip(rng, hashes[base * 10], k + family)
    ids = np.arange(4000)
    late = np.array([4, 14, 24])
    early = np.setdiff1d(ids, late)
    must = [(0, 3999)]  # the manager says 3999 belongs with 0 although the hashes disagree
    cannot = [(10, 11), (20, 24)]  # split apart, 24 arrives only later

    index = HammingIndex.build(ids=early, hashes=hashes[early], threshold=8)
    before = clusters_build(pairs=index.pairs(), must_link=must, cannot_link=cannot)
    _, new_pairs = index.extend(ids=late, hashes=hashes[late])
    after = clusters_build(pairs=index.pairs() + new_pairs, must_link=must, cannot_link=cannot)

    for result in (before, after):
        member_sets = [set(c.members) for c in result.clusters]
        assert any({0, 3999} <= s for s in member_sets)
        assert not any({10, 11} <= s for s in member_sets)
        assert not any({20, 24} <= s for s in member_sets)
    assert any({0, 4} <= set(c.members) for c in after.clusters)


def test_incremental_joining_equals_full_recomputation():
    rng = np.random.default_rng(9)
    hashes = _random_hashes(rng, 10_000)
    _plant(rng, hashes, 8, count=800)
    # Chains of copies of copies make clusters larger than pairs.
    for k in range(200):
        hashes[9000 + k] = _flip(rng, hashes[8000 + k], 3)
        hashes[8000 + k] = _flip(rng, hashes[7000 + k], 3)
    ids = rng.permutation(10_000) + 1
    dhashes = {int(i): int(h) for i, h in zip(ids, hashes, strict=True)}
    must = [(int(ids[1]), int(ids[2])), (int(ids[7000]), int(ids[9000]))]
    cannot = [(int(ids[7001]), int(ids[9001])), (int(ids[8002]), int(ids[9002]))]

    full = clusters_build(
        pairs=near_duplicate_pairs(ids=ids, hashes=hashes),
        must_link=must,
        cannot_link=cannot,
        hashes=dhashes,
    )
    index = HammingIndex.build(ids=ids[:6000], hashes=hashes[:6000])
    pairs = list(index.pairs())
    for start in range(6000, 10_000, 1000):  # four batches of new uploads
        index, new_pairs = index.extend(
            ids=ids[start : start + 1000], hashes=hashes[start : start + 1000]
        )
        pairs += new_pairs
    incremental = clusters_build(pairs=pairs, must_link=must, cannot_link=cannot, hashes=dhashes)

    assert incremental == full
    assert max(len(c.members) for c in full.clusters) >= 3
