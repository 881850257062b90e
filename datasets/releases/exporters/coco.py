"""COCO captions JSON, one file per split, written in one streaming pass.

A COCO file lists images and annotations in two arrays, but the rows come one pair at a time,
grouped by image. Images go straight into the output file as each new ``image_id`` appears;
annotations (one per pair labelled a match, id = pair id) go to an anonymous spool file that
is appended once the split ends; the licence table, only complete at the end, comes last.
Memory stays flat whatever the split's size. JSON is ASCII-escaped because
``pycocotools.coco.COCO`` opens the file in the platform's default encoding.

Each image carries the standard ``id``, ``file_name`` (the release's image path), ``width``,
``height`` and ``license`` (an id into ``licenses``, numbered from 1 in order of first
appearance), plus ``sha256``, ``cluster_id``, ``source_url`` and ``original_name``. Each
annotation carries ``id``, ``image_id`` and ``caption``, plus ``caption_id``, ``kind``,
``label_source`` and ``confidence``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from datasets.releases.exporters.rows import ReleaseRow

COCO_DIR = "coco"
COCO_FILE = "captions_{split}.json"

_BUFFER_BYTES = 1 << 20
_JSON = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False)


class CocoSink:
    """Writes ``coco/captions_<split>.json`` for every split that has rows.

    ``info`` becomes each file's ``info`` object (with ``split`` added); pass only values fixed
    by the release (name, version, year) to keep rebuilds byte-identical.
    """

    def __init__(self, directory: Path, *, info: Mapping[str, object] | None = None) -> None:
        self.directory = Path(directory) / COCO_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self._info = dict(info or {})
        self._files: list[Path] = []
        self._split: str | None = None
        self._out: IO[str] | None = None
        self._spool: IO[str] | None = None
        self._image_id: int | None = None
        self._images = 0
        self._annotations = 0
        self._licenses: dict[tuple[str, str], int] = {}

    def write(self, row: ReleaseRow) -> None:
        if row["split"] != self._split:
            self._finish_split()
            self._start_split(row["split"])
        out, spool = self._out, self._spool
        assert out is not None and spool is not None
        if row["image_id"] != self._image_id:
            self._image_id = row["image_id"]
            key = (row["license"], row["license_url"])
            license_id = self._licenses.setdefault(key, len(self._licenses) + 1)
            image = {
                "id": row["image_id"],
                "file_name": row["image_path"],
                "width": row["width"],
                "height": row["height"],
                "license": license_id,
                "sha256": row["image_sha256"],
                "cluster_id": row["cluster_id"],
                "source_url": row["source_url"],
                "original_name": row["original_name"],
            }
            out.write("," if self._images else "")
            out.write(_JSON.encode(image))
            self._images += 1
        if row["label"] == 1:
            annotation = {
                "id": row["pair_id"],
                "image_id": row["image_id"],
                "caption": row["caption"],
                "caption_id": row["caption_id"],
                "kind": row["kind"],
                "label_source": row["label_source"],
                "confidence": row["confidence"],
            }
            spool.write("," if self._annotations else "")
            spool.write(_JSON.encode(annotation))
            self._annotations += 1

    def close(self) -> list[Path]:
        self._finish_split()
        return list(self._files)

    def abort(self) -> None:
        for handle in (self._out, self._spool):
            if handle is not None:
                handle.close()
        self._out = self._spool = None
        for path in self._files:
            path.unlink(missing_ok=True)

    def _start_split(self, split: str) -> None:
        path = self.directory / COCO_FILE.format(split=split)
        self._files.append(path)
        self._split = split
        self._out = open(  # noqa: SIM115 — closed by _finish_split() or abort()
            path, "w", encoding="ascii", newline="\n", buffering=_BUFFER_BYTES
        )
        # Anonymous: the operating system removes it even if the build is killed.
        self._spool = tempfile.TemporaryFile(  # noqa: SIM115
            "w+", encoding="ascii", newline="\n", dir=self.directory
        )
        self._image_id = None
        self._images = self._annotations = 0
        self._licenses = {}
        self._out.write('{"info":')
        self._out.write(_JSON.encode({**self._info, "split": split}))
        self._out.write(',"images":[')

    def _finish_split(self) -> None:
        out, spool = self._out, self._spool
        if out is None or spool is None:
            return
        out.write('],"annotations":[')
        spool.seek(0)
        shutil.copyfileobj(spool, out, _BUFFER_BYTES)
        spool.close()
        licenses = [
            {"id": license_id, "name": name, "url": url}
            for (name, url), license_id in self._licenses.items()
        ]
        out.write('],"licenses":')
        out.write(_JSON.encode(licenses))
        out.write("}\n")
        out.close()
        self._out = self._spool = None
