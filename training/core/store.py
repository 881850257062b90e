"""Where the core's data lives when it is not on this machine's disk.

The core reads a release's images by path and keeps the frozen encoders' embeddings in a local
folder. A worker that shares storage with others (Concord's Django side, with S3) passes a
:class:`DataStore` instead: images are then fetched by content key, and only those whose
embeddings are missing (or, for a from-scratch encoder, whose pixels are needed); embedding
shards are shared through it, so what one worker embedded no other worker embeds again.
Both are plain protocols: the core never knows what storage is behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class ShardStore(Protocol):
    """A flat, shared folder of immutable embedding-cache shards (``shard-*.npz``)."""

    def names(self) -> list[str]:
        """The names of the shards stored so far."""
        ...

    def read(self, name: str) -> bytes:
        """One shard's bytes; raises if it cannot be read."""
        ...

    def write(self, name: str, data: bytes) -> None:
        """Store a new shard under ``name`` (names are unique; a shard never changes)."""
        ...


class DataStore(Protocol):
    """Images by content key and the embedding cache's shared shards."""

    def image_files(self, keys: Sequence[str]) -> list[str]:
        """Local paths of the images with these content keys (SHA-256), in order, fetched as
        needed; raises if one cannot be had."""
        ...

    def embedding_shards(self, namespace: str) -> ShardStore:
        """The shared shards of one encoder (``namespace`` is its cache folder name)."""
        ...
