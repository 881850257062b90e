"""Stored files through the storage API, on a local folder and on an S3 server (moto, real HTTP):
uploads replace, downloads are checked and atomic, the scratch cache fetches once, downloads
stream locally and redirect to a short-lived signed URL on S3."""

import hashlib
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage, storages

from config.storage import (
    RELEASES,
    StorageDataStore,
    StoredFileError,
    scratch_fetch,
    storage_check,
    storage_delete_tree,
    storage_download,
    storage_read,
    storage_response,
    storage_upload,
    storage_walk,
    storage_write,
)
from tests.s3 import new_bucket, s3_storages


@pytest.fixture(params=["local", "s3"])
def backend(request, settings):
    """Each test runs on the local default and on S3 (a fresh bucket)."""
    if request.param == "s3":
        settings.STORAGES = s3_storages(new_bucket())
    return request.param


def test_upload_replaces_and_walk_lists_every_file(backend, tmp_path):
    source = tmp_path / "pairs.jsonl"
    source.write_bytes(b"first")
    storage_upload(alias=RELEASES, name="p/v1/pairs.jsonl", source=source)
    source.write_bytes(b"second")
    # A rebuild stores under the same name; the name never gets a suffix.
    storage_upload(alias=RELEASES, name="p/v1/pairs.jsonl", source=source)
    storage_write(alias=RELEASES, name="p/v1/coco/captions_train.json", data=b"{}")
    assert storage_read(alias=RELEASES, name="p/v1/pairs.jsonl") == b"second"
    assert sorted(storage_walk(alias=RELEASES, prefix="p/v1")) == [
        "p/v1/coco/captions_train.json",
        "p/v1/pairs.jsonl",
    ]
    assert storage_delete_tree(alias=RELEASES, prefix="p/v1") == 2
    assert list(storage_walk(alias=RELEASES, prefix="p")) == []
    assert list(storage_walk(alias=RELEASES, prefix="never-written")) == []


def test_a_download_is_checked_and_never_left_half_written(backend, tmp_path):
    storage_write(alias=RELEASES, name="p/v1/pairs.parquet", data=b"table bytes")
    good = hashlib.sha256(b"table bytes").hexdigest()
    target = tmp_path / "copy" / "pairs.parquet"
    assert storage_download(
        alias=RELEASES, name="p/v1/pairs.parquet", target=target, sha256=good
    ).read_bytes() == (b"table bytes")
    target.unlink()
    with pytest.raises(StoredFileError, match="does not have the SHA-256"):
        storage_download(alias=RELEASES, name="p/v1/pairs.parquet", target=target, sha256="0" * 64)
    with pytest.raises(StoredFileError, match="cannot be read"):
        storage_download(alias=RELEASES, name="p/v1/missing", target=target)
    assert list(target.parent.iterdir()) == []


def test_the_scratch_cache_fetches_a_file_once(backend, settings):
    data = b"checkpoint bytes"
    key = hashlib.sha256(data).hexdigest()
    storage_write(alias=RELEASES, name="p/1/best.pt", data=data)
    first = scratch_fetch(alias=RELEASES, name="p/1/best.pt", key=key, suffix=".pt", verify=True)
    assert first.read_bytes() == data and first.is_relative_to(settings.CONCORD_SCRATCH_DIR)
    storages[RELEASES].delete("p/1/best.pt")
    # Warm: the stored copy is not read again.
    assert scratch_fetch(alias=RELEASES, name="p/1/best.pt", key=key, verify=True, suffix=".pt")


def test_the_data_store_fetches_images_by_content_key(backend):
    storage_write(alias="default", name="images/1/aa/photo.jpg", data=b"jpeg bytes")
    store = StorageDataStore(images={"aa" * 32: ("default", "images/1/aa/photo.jpg")})
    [path] = store.image_files(["aa" * 32])
    assert path.endswith(".jpg") and Path(path).read_bytes() == b"jpeg bytes"
    with pytest.raises(StoredFileError, match="no stored copy"):
        store.image_files(["bb" * 32])
    shards = store.embedding_shards("encoder-1")
    assert shards.names() == []
    shards.write("shard-1-0123abcd.npz", b"npz")
    assert shards.names() == ["shard-1-0123abcd.npz"]
    assert shards.read("shard-1-0123abcd.npz") == b"npz"


def test_local_files_stream_and_s3_files_redirect_to_a_signed_url(backend):
    storage_write(alias=RELEASES, name="p/v1/DATASHEET.md", data=b"# Datasheet")
    response = storage_response(alias=RELEASES, name="p/v1/DATASHEET.md", filename="DATASHEET.md")
    if backend == "local":
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == b"# Datasheet"
        assert 'filename="DATASHEET.md"' in response["Content-Disposition"]
        return
    assert response.status_code == 302
    url = response["Location"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert "Signature" in query or "X-Amz-Signature" in query
    assert query["response-content-disposition"] == ['attachment; filename="DATASHEET.md"']
    with urllib.request.urlopen(url, timeout=10) as fetched:
        assert fetched.read() == b"# Datasheet"
    # The signature covers the name: another file cannot be had with it.
    forged = url.replace("DATASHEET.md", "manifest.json", 1)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(forged, timeout=10)


def test_storage_check_fails_for_a_missing_bucket_or_folder(backend, settings, tmp_path):
    storage_check(RELEASES)
    if backend == "s3":
        settings.STORAGES = s3_storages("no-such-bucket-" + new_bucket()[-8:])
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        settings.STORAGES = {
            **settings.STORAGES,
            RELEASES: {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": blocker / "releases"},
            },
        }
        assert isinstance(storages[RELEASES], FileSystemStorage)
    with pytest.raises(Exception):  # noqa: B017 - botocore's ClientError or an OSError
        storage_check(RELEASES)
