"""The core with a DataStore: images fetched by content key (only what the embedding cache lacks),
embedding shards shared between workers that have nothing on disk in common."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tests.training.core.synthetic import tiny_config
from training.core.data import load_release
from training.core.encoders import EmbeddingCache, embed_with_cache
from training.core.evaluate import evaluate
from training.core.inputs import InputBuilder
from training.core.train import train


class MemoryShards:
    """A shared shard folder in memory (what S3 is to the Django side)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.reads = 0

    def names(self) -> list[str]:
        return sorted(self.files)

    def read(self, name: str) -> bytes:
        self.reads += 1
        return self.files[name]

    def write(self, name: str, data: bytes) -> None:
        assert name not in self.files, "shards are never rewritten"
        self.files[name] = data


class FolderStore:
    """Images by content key from a 'remote' folder, copied to a worker's own folder on request."""

    def __init__(self, *, remote: dict[str, Path], local: Path, shards: MemoryShards) -> None:
        self.remote, self.local, self.shards = remote, local, shards
        self.fetched: list[str] = []

    def image_files(self, keys: Sequence[str]) -> list[str]:
        paths = []
        for key in keys:
            target = self.local / f"{key}{self.remote[key].suffix}"
            if not target.exists():
                self.fetched.append(key)
                shutil.copyfile(self.remote[key], target)
            paths.append(str(target))
        return paths

    def embedding_shards(self, namespace: str) -> MemoryShards:
        return self.shards


class Encoder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, items: Sequence[str]) -> np.ndarray:
        self.seen.extend(items)
        return np.array([[len(s), ord(s[-1])] for s in items], dtype=np.float32)


def test_a_worker_with_an_empty_cache_reads_the_shards_another_stored(tmp_path: Path) -> None:
    shared = MemoryShards()
    encoder = Encoder()
    keys, items = ["k1", "k2"], ["apple", "kiwi"]
    first, stats = embed_with_cache(
        keys,
        items,
        lambda: encoder,
        EmbeddingCache(tmp_path / "worker-a", "enc", shared=shared),
        progress=False,
    )
    assert stats.computed == 2 and len(shared.files) == 1

    other = EmbeddingCache(tmp_path / "worker-b", "enc", shared=shared)
    again, stats = embed_with_cache(
        [*keys, "k3"], [*items, "fig"], lambda: encoder, other, progress=False
    )
    assert stats.computed == 1 and encoder.seen == ["apple", "kiwi", "fig"]
    assert np.array_equal(again[:2], first)
    assert len(shared.files) == 2
    # Worker B's folder now mirrors both shards; a third worker reads each shard once.
    assert sorted(p.name for p in (tmp_path / "worker-b" / "enc").glob("shard-*.npz")) == sorted(
        shared.files
    )
    reads = shared.reads
    third = EmbeddingCache(tmp_path / "worker-c", "enc", shared=shared)
    assert len(third) == 3
    assert len(third) == 3  # a second look lists the shared folder but reads nothing again
    assert shared.reads == reads + 2


def test_a_shared_folder_never_makes_a_worker_read_a_foreign_name(tmp_path: Path) -> None:
    shared = MemoryShards()
    shared.files["../../escape.npz"] = b"x"
    shared.files["notes.txt"] = b"x"
    assert len(EmbeddingCache(tmp_path, "enc", shared=shared)) == 0
    assert shared.reads == 0


def test_training_on_a_release_whose_images_are_elsewhere(tmp_path: Path, release_dir: Path):
    """The pairs table names images that are not on this machine: the store fetches them by key
    (every one, for the from-scratch encoder's pixels) and the run matches one on local files."""
    images_elsewhere = tmp_path / "bucket"
    shutil.move(release_dir / "images", images_elsewhere)
    frame = load_release(release_dir)
    remote: dict[str, Path] = {}
    for split in frame.splits.values():
        for key, path in zip(split.image_keys, split.image_paths, strict=True):
            remote[key] = images_elsewhere / Path(path).name
    worker = tmp_path / "worker"
    worker.mkdir()
    store = FolderStore(remote=remote, local=worker, shards=MemoryShards())
    config = tiny_config(tmp_path, epochs=2)
    result = train(config, release_dir, tmp_path / "out", show_progress=False, store=store)
    assert sorted(store.fetched) == sorted(remote)
    assert evaluate(result.checkpoint, release_dir, store=store) == result.metrics
    assert len(store.fetched) == len(remote)  # warm: nothing fetched twice

    shutil.copytree(images_elsewhere, release_dir / "images")
    local = train(config, release_dir, tmp_path / "local", show_progress=False)
    assert local.metrics == result.metrics


def test_pretrained_inputs_fetch_only_the_images_the_cache_lacks(tmp_path: Path, monkeypatch):
    """With the frozen encoder, an image already embedded (by any worker) is never fetched."""
    photos = tmp_path / "bucket"
    photos.mkdir()
    remote = {}
    for n in range(3):
        path = photos / f"{n}.png"
        path.write_bytes(b"png %d" % n)
        remote[f"{n:064x}"] = path
    shards = MemoryShards()
    seen: list[str] = []

    class FakeImageEncoder:
        def __call__(self, paths: Sequence[str]) -> np.ndarray:
            seen.extend(Path(p).read_bytes().decode() for p in paths)
            return np.ones((len(paths), 4), dtype=np.float32)

    monkeypatch.setattr(InputBuilder, "image_encoder", lambda self: FakeImageEncoder())
    keys = list(remote)
    config = tiny_config(tmp_path, encoder="pretrained", cache_dir=str(tmp_path / "cache-a"))
    first = FolderStore(remote=remote, local=_folder(tmp_path / "a"), shards=shards)
    InputBuilder(config, progress=False, store=first).images(keys[:2], ["unused"] * 2)
    assert sorted(first.fetched) == sorted(keys[:2]) and sorted(seen) == ["png 0", "png 1"]

    # Another worker, empty cache folder, same shared shards: only the third image is fetched.
    config_b = tiny_config(tmp_path, encoder="pretrained", cache_dir=str(tmp_path / "cache-b"))
    second = FolderStore(remote=remote, local=_folder(tmp_path / "b"), shards=shards)
    vectors = InputBuilder(config_b, progress=False, store=second).images(keys, ["unused"] * 3)
    assert second.fetched == [keys[2]] and seen[-1] == "png 2"
    assert tuple(vectors.shape) == (3, 4)


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
