"""Stored files: the storage aliases, a scratch cache named by content hash, and downloads.

Three aliases (``STORAGES`` in settings): ``default`` holds media (images, thumbnails),
``releases`` the release files (``<slug>/v<n>/…``), ``models`` the checkpoints
(``<slug>/<version id>/…``) and the frozen encoders' embedding cache (``embeddings/<encoder
id>/shard-*.npz``). They are local folders in the embedded default and S3 buckets (django-storages)
in production; code reaches them only through the storage API, never a local path, so any
worker can write what any other reads.

A worker that needs a stored file on its own disk (a pairs table to train on, a checkpoint to
mine with, an image to embed) fetches it into its scratch folder (``CONCORD_SCRATCH_DIR``)
under a name made of its content hash: a warm worker does not fetch the same bytes twice, and a
worker with an empty ``var/`` fetches what it needs. The scratch folder is a cache and may be
deleted at any time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.http import FileResponse, HttpResponse, HttpResponseRedirect

MEDIA = "default"
RELEASES = "releases"
MODELS = "models"
ALIASES = (MEDIA, RELEASES, MODELS)
_BLOCK = 1 << 20
FETCH_THREADS = 8

ERROR_SAVED_ELSEWHERE = "Storage {alias!r} saved {name!r} as {saved!r}; expected the same name."
ERROR_SHA256 = "{alias}:{name} does not have the SHA-256 its manifest gives ({expected})."


class StoredFileError(Exception):
    """A stored file is missing, unreadable or not what it should be; the message says which."""


def storage(alias: str) -> Storage:
    """The storage behind ``alias`` (``default``, ``releases`` or ``models``)."""
    return storages[alias]


def storage_is_local(alias: str) -> bool:
    """Whether ``alias`` is a folder on this machine (the embedded default) rather than a bucket."""
    return isinstance(storage(alias), FileSystemStorage)


def scratch_dir(*parts: str) -> Path:
    """``CONCORD_SCRATCH_DIR/<parts>``, created: this worker's cache of fetched files."""
    folder = Path(settings.CONCORD_SCRATCH_DIR).joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a local file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def storage_read(*, alias: str, name: str) -> bytes:
    """The bytes of a (small) stored file; raises :class:`StoredFileError` naming it."""
    try:
        with storage(alias).open(name, "rb") as fh:
            return fh.read()
    except Exception as exc:
        raise StoredFileError(f"{alias}:{name} cannot be read ({_reason(exc)})") from exc


def storage_upload(*, alias: str, name: str, source: Path) -> None:
    """Store the local file ``source`` as ``name``, replacing what is there (releases and models
    overwrite by configuration; the name must come back unchanged)."""
    with open(source, "rb") as fh:
        saved = storage(alias).save(name, File(fh, name=PurePosixPath(name).name))
    if saved != name:
        storage(alias).delete(saved)
        raise StoredFileError(ERROR_SAVED_ELSEWHERE.format(alias=alias, name=name, saved=saved))


def storage_write(*, alias: str, name: str, data: bytes) -> None:
    """Store ``data`` as ``name`` (see :func:`storage_upload`)."""
    saved = storage(alias).save(name, ContentFile(data, name=PurePosixPath(name).name))
    if saved != name:
        storage(alias).delete(saved)
        raise StoredFileError(ERROR_SAVED_ELSEWHERE.format(alias=alias, name=name, saved=saved))


def storage_download(*, alias: str, name: str, target: Path, sha256: str | None = None) -> Path:
    """Copy a stored file to ``target`` (atomically: a partial download never has its name),
    checking its SHA-256 when one is given. Raises :class:`StoredFileError`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, storage(alias).open(name, "rb") as source:
            while block := source.read(_BLOCK):
                digest.update(block)
                out.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise StoredFileError(ERROR_SHA256.format(alias=alias, name=name, expected=sha256))
        os.replace(temporary, target)
    except StoredFileError:
        Path(temporary).unlink(missing_ok=True)
        raise
    except Exception as exc:
        Path(temporary).unlink(missing_ok=True)
        raise StoredFileError(f"{alias}:{name} cannot be read ({_reason(exc)})") from exc
    return target


def scratch_fetch(*, alias: str, name: str, key: str, suffix: str = "", verify: bool) -> Path:
    """A local copy of a stored file in the scratch cache, named by its content ``key``.

    ``key`` is the file's SHA-256 when ``verify`` (the copy is checked against it), or another
    content identity (an image's upload hash) when not. Fetched once per worker and kept.
    """
    target = scratch_dir("objects", key[:2]) / f"{key}{suffix}"
    if target.is_file():
        return target
    return storage_download(alias=alias, name=name, target=target, sha256=key if verify else None)


def storage_walk(*, alias: str, prefix: str) -> Iterator[str]:
    """Every stored file name under ``prefix`` (a folder name without trailing slash)."""
    try:
        folders, files = storage(alias).listdir(prefix)
    except FileNotFoundError:
        return
    for name in files:
        yield f"{prefix}/{name}" if prefix else name
    for folder in folders:
        yield from storage_walk(alias=alias, prefix=f"{prefix}/{folder}" if prefix else folder)


def storage_delete_tree(*, alias: str, prefix: str) -> int:
    """Delete every stored file under ``prefix``; returns how many. Empty folders left by a
    local storage are removed too."""
    target = storage(alias)
    names = list(storage_walk(alias=alias, prefix=prefix))
    for name in names:
        target.delete(name)
    if isinstance(target, FileSystemStorage):
        # Local folders only: object stores have no folders to leave behind.
        root = Path(target.location) / prefix
        if root.is_dir():
            shutil.rmtree(root, ignore_errors=True)
    return len(names)


def storage_response(
    *,
    alias: str,
    name: str,
    filename: str | None = None,
    content_type: str | None = None,
    cache_seconds: int | None = None,
) -> HttpResponse:
    """A stored file for a browser that has already passed the permission check.

    A local storage streams it; an object store answers with a redirect to a short-lived signed
    URL (``CONCORD_SIGNED_URL_SECONDS``), so bytes never pass through the web tier. With
    ``filename`` the browser saves it under that name instead of showing it.
    """
    target = storage(alias)
    if not isinstance(target, FileSystemStorage):
        parameters: dict[str, str] = {}
        if filename:
            parameters["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        if content_type:
            parameters["ResponseContentType"] = content_type
        try:
            url = target.url(name, parameters=parameters or None)  # type: ignore[call-arg]
        except TypeError:  # a backend whose url() takes no parameters
            url = target.url(name)
        return HttpResponseRedirect(url)
    response = FileResponse(
        target.open(name, "rb"),
        as_attachment=filename is not None,
        filename=filename or "",
        content_type=content_type,
    )
    if cache_seconds:
        response["Cache-Control"] = f"private, max-age={cache_seconds}"
    return response


def storage_check(alias: str) -> None:
    """Raise if ``alias`` cannot be reached: an object store's bucket answers a HEAD request, a
    local folder exists and is writable. Cheap enough for a load balancer's probe."""
    target = storage(alias)
    if isinstance(target, FileSystemStorage):
        location = Path(target.location)
        location.mkdir(parents=True, exist_ok=True)
        if not os.access(location, os.W_OK):
            raise PermissionError(f"{location} is not writable")
        return
    bucket = getattr(target, "bucket", None)
    if bucket is None:
        target.exists("healthz")
        return
    bucket.meta.client.head_bucket(Bucket=bucket.name)


class StorageDataStore:
    """What the training core reads from storage (``training.core.store.DataStore``): images by
    content key through the scratch cache, and the embedding cache's shards.

    ``images`` maps an image's content key (its SHA-256) to ``(alias, name)`` of a stored copy.
    Only images whose embeddings are missing (or a from-scratch encoder's pixels) are fetched.
    """

    def __init__(self, *, images: Mapping[str, tuple[str, str]], shards_alias: str = MODELS):
        self._images = dict(images)
        self._shards_alias = shards_alias

    def image_files(self, keys: Sequence[str]) -> list[str]:
        missing = [key for key in keys if key not in self._images]
        if missing:
            raise StoredFileError(f"no stored copy is known for image {missing[0]}")

        def fetch(key: str) -> str:
            alias, name = self._images[key]
            suffix = PurePosixPath(name).suffix
            return str(scratch_fetch(alias=alias, name=name, key=key, suffix=suffix, verify=False))

        # A batch of images from an object store comes faster over several connections.
        with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
            return list(pool.map(fetch, keys))

    def embedding_shards(self, namespace: str) -> StorageShards:
        return StorageShards(alias=self._shards_alias, prefix=f"embeddings/{namespace}")


class StorageShards:
    """The embedding cache's shards of one encoder in storage (``training.core.store.ShardStore``)."""

    def __init__(self, *, alias: str, prefix: str) -> None:
        self.alias = alias
        self.prefix = prefix

    def names(self) -> list[str]:
        try:
            return sorted(storage(self.alias).listdir(self.prefix)[1])
        except FileNotFoundError:
            return []

    def read(self, name: str) -> bytes:
        return storage_read(alias=self.alias, name=f"{self.prefix}/{name}")

    def write(self, name: str, data: bytes) -> None:
        storage_write(alias=self.alias, name=f"{self.prefix}/{name}", data=data)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text
