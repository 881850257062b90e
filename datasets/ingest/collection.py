"""URL manifests for collection, read as a stream, and the retry policy of a fetch.

A pure core (the standard library and pyarrow, no Django). ``read_url_manifest`` takes a binary
file and yields one ``UrlRow`` per data row without ever holding the file whole: CSV/TSV line by
line, JSONL line by line, Parquet one record batch at a time. Rows are named ``row N`` in every
format (``row_name``: the data row number, the header and blank lines not counted), the name
every page, the API and the command show for the row, fetched or refused. It reads img2dataset's input
shapes: a ``url`` column and an optional ``caption`` column (other names can be given), with
``license``/``license_url`` kept as the image's licence and every other column kept as
provenance in ``extra``. A row the reader can refuse (no URL, not http/https, NUL bytes, too long)
carries its reason in ``error``; only a file that cannot be read at all (unknown suffix, no URL
column, not Parquet) raises SourceError.
"""

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from datasets.ingest.fetching import text_redacted, url_redacted
from datasets.ingest.sources import (
    LICENSE_NAME_MAX_CHARS,
    LICENSE_URL_MAX_CHARS,
    NAME_MAX_CHARS,
    ROW_BAD_URL,
    SOURCE_URL_MAX_CHARS,
    SourceError,
    display_text,
    message_text,
    text_problem,
    url_problem,
)

URL_SUFFIXES = ("csv", "tsv", "jsonl", "ndjson", "parquet")
URL_MANIFEST_UNKNOWN = "A URL manifest must end in .csv, .tsv, .jsonl or .parquet, not '{suffix}'."
URL_COLUMN_MISSING = "No '{column}' column: the header reads {header}."
NOT_TEXT = (
    "This is not a text manifest: its first line holds bytes that are not UTF-8 text. Send a CSV,"
    " TSV, JSONL or Parquet file."
)
ROW_NO_URL = "no URL in column '{column}'."
ROW_WIDTH = "{found} where the header has {expected} columns."
ROW_JSON = "not valid JSON ({detail})."
ROW_NOT_OBJECT = "not a JSON object."
ROW_JSON_DEEP = "nested too deeply"
ROW_NOT_TEXT = "'{field}' must be text, not {kind}."
ROW_KEY_UNSAFE = "an object key may not hold '..'."
EXTRA_MAX_CHARS = 2000
EXTRA_MAX_KEYS = 50
_LICENCE_COLUMNS = ("license", "license_url")
_PARQUET_BATCH = 2048


@dataclass
class UrlRow:
    """One data row of a URL manifest; ``where`` says how to find it (``row 12``: see
    ``row_name``)."""

    where: str
    url: str = ""
    caption: str | None = None
    license_name: str = ""
    license_url: str = ""
    extra: dict = field(default_factory=dict)
    error: str = ""


def manifest_suffix(name: str) -> str:
    """The manifest's format from its name; raises SourceError for one this reader lacks."""
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in URL_SUFFIXES:
        raise SourceError(URL_MANIFEST_UNKNOWN.format(suffix=f".{suffix}" if suffix else name))
    return suffix


def read_url_manifest(
    handle: BinaryIO,
    *,
    name: str,
    url_column: str = "url",
    caption_column: str = "caption",
    key_prefix: str | None = None,
) -> Iterator[UrlRow]:
    """Yield the manifest's rows in order (see the module docstring). ``handle`` must be
    seekable for Parquet. Raises SourceError before the first row when the file as a whole
    cannot be read. With ``key_prefix`` (a captions manifest beside objects in a bucket, e.g.
    ``s3://bucket/photos/``) the URL column holds object keys instead of URLs, full or relative
    to the prefix (``bucket_object_key``)."""
    suffix = manifest_suffix(name)
    columns = {"url_column": url_column, "caption_column": caption_column, "key_prefix": key_prefix}
    if suffix == "parquet":
        rows = _parquet_rows(handle, **columns)
    elif suffix in ("jsonl", "ndjson"):
        rows = _jsonl_rows(handle, **columns)
    else:
        rows = _csv_rows(handle, delimiter="\t" if suffix == "tsv" else None, **columns)
    return numbered(rows)


def bucket_object_key(key: str, prefix: str) -> str:
    """The S3 key a captions manifest's ``key`` names under ``prefix``: a key that begins with
    the prefix is the full key (``set/a.jpg`` under ``set`` or ``set/``); any other is relative
    to the prefix as a folder (``a.jpg`` under ``set`` or ``set/`` is ``set/a.jpg``). Never
    ``setset/`` or ``set/set/``."""
    key, prefix = key.lstrip("/"), prefix.lstrip("/")
    if not prefix or key.startswith(prefix):
        return key
    return prefix + key if prefix.endswith("/") else f"{prefix}/{key}"


def row_name(number: int) -> str:
    """How a person finds a manifest row, in every format and everywhere it is shown: ``row N``,
    the N-th data row counted from 1, a header line and blank lines not counted. It is the
    row's position in the job plus one."""
    return f"row {number}"


def numbered(rows: Iterator[UrlRow]) -> Iterator[UrlRow]:
    """The rows with ``where`` set to their data row number (``row_name``)."""
    for number, row in enumerate(rows, start=1):
        row.where = row_name(number)
        yield row


def file_name_of(url: str) -> str:
    """The last path segment of a URL, decoded and cut to what Image.original_name holds: the
    name a fetched image is shown under."""
    path = urlsplit(url).path
    name = unquote(path.rsplit("/", 1)[-1]) or urlsplit(url).hostname or "image"
    return display_text(name, limit=NAME_MAX_CHARS)


def retry_delay(*, attempts: int, retry_after: float | None, base: float, cap: float) -> float:
    """Seconds to wait before fetching a row again after a transient failure: the server's
    Retry-After when it gave one, else exponential backoff (base, 2×base, 4×base…), never more
    than ``cap``."""
    if retry_after is not None:
        return min(cap, max(0.0, retry_after))
    return min(cap, base * (2 ** max(0, attempts - 1)))


# --- formats --------------------------------------------------------------------------------------


def _text_stream(handle: BinaryIO) -> io.TextIOWrapper:
    # Bytes that are not UTF-8 become lone surrogates, which text_problem refuses row by row.
    head = handle.read(4) if hasattr(handle, "read") else b""
    handle.seek(0)
    encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    return io.TextIOWrapper(handle, encoding=encoding, errors="surrogateescape", newline="")


def _column(names: list[str], wanted: str) -> str | None:
    """The column named ``wanted``: exactly, else in any case (``URL`` for ``url``), as the
    importers read their headers; None when there is none."""
    if wanted in names:
        return wanted
    folded = wanted.casefold()
    return next(
        (name for name in names if isinstance(name, str) and name.casefold() == folded), None
    )


def _columns(names: list[str], url_column: str, caption_column: str) -> tuple[str, str]:
    url = _column(names, url_column)
    if url is None:
        raise SourceError(
            URL_COLUMN_MISSING.format(
                column=url_column, header=display_text(str(names[:20]), limit=200)
            )
        )
    return url, _column(names, caption_column) or caption_column


_BINARY = re.compile("[\x00\udc80-\udcff]")  # NUL, or bytes that are not UTF-8 (surrogateescape)


def _csv_rows(
    handle: BinaryIO, *, delimiter: str | None, url_column: str, caption_column: str, key_prefix
) -> Iterator[UrlRow]:
    text = _text_stream(handle)
    header_line = text.readline()
    if not header_line.strip():
        raise SourceError("The manifest holds no header line.")
    if _BINARY.search(header_line):
        raise SourceError(NOT_TEXT)
    if delimiter is None:
        counts = {d: header_line.count(d) for d in (",", "\t", ";", "|")}
        delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    header = next(csv.reader([header_line], delimiter=delimiter))
    header = [column.strip() for column in header]
    url_column, caption_column = _columns(header, url_column, caption_column)
    return _csv_body(text, header, delimiter, url_column, caption_column, key_prefix)


def _csv_body(
    text: io.TextIOWrapper,
    header: list[str],
    delimiter: str,
    url_column: str,
    caption_column: str,
    key_prefix: str | None,
) -> Iterator[UrlRow]:
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield UrlRow(where="", error=f"not valid CSV ({message_text(str(exc), limit=200)}).")
            continue
        if not values or values == [""]:
            continue
        if len(values) != len(header):
            found = f"{len(values)} value" + ("" if len(values) == 1 else "s")
            yield UrlRow(where="", error=ROW_WIDTH.format(found=found, expected=len(header)))
            continue
        values = dict(zip(header, values, strict=True))
        yield _row("", values, url_column, caption_column, key_prefix)


def _jsonl_rows(
    handle: BinaryIO, *, url_column: str, caption_column: str, key_prefix: str | None
) -> Iterator[UrlRow]:
    text = _text_stream(handle)
    for line in text:
        if not line.strip():
            continue
        try:
            values = json.loads(line)
        except RecursionError:
            yield UrlRow(where="", error=ROW_JSON.format(detail=ROW_JSON_DEEP))
            continue
        except json.JSONDecodeError as exc:
            yield UrlRow(where="", error=ROW_JSON.format(detail=message_text(str(exc), limit=120)))
            continue
        if not isinstance(values, dict):
            yield UrlRow(where="", error=ROW_NOT_OBJECT)
            continue
        names = list(values)
        url = _column(names, url_column) or url_column
        caption = _column(names, caption_column) or caption_column
        yield _row("", values, url, caption, key_prefix)


def _parquet_rows(
    handle: BinaryIO, *, url_column: str, caption_column: str, key_prefix: str | None
) -> Iterator[UrlRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"Not a Parquet file: {message_text(str(exc), limit=200)}") from exc
    names = parquet.schema_arrow.names
    url_column, caption_column = _columns(names, url_column, caption_column)
    return _parquet_body(parquet, url_column, caption_column, key_prefix)


def _parquet_body(
    parquet, url_column: str, caption_column: str, key_prefix: str | None
) -> Iterator[UrlRow]:
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH):
        for values in batch.to_pylist():
            yield _row("", values, url_column, caption_column, key_prefix)


def _row(
    where: str, values: dict, url_column: str, caption_column: str, key_prefix: str | None
) -> UrlRow:
    url = values.get(url_column)
    if url is not None and not isinstance(url, str):
        return UrlRow(where=where, error=ROW_NOT_TEXT.format(field=url_column, kind=kind_of(url)))
    url = url.strip() if url is not None else ""
    if key_prefix is not None and url:
        key = url.lstrip("/")
        if ".." in key.split("/"):
            return UrlRow(where=where, url=display_text(url, limit=200), error=ROW_KEY_UNSAFE)
        bucket_root, _, prefix = key_prefix.partition("://")[2].partition("/")
        url = f"s3://{bucket_root}/{bucket_object_key(key, prefix)}"
    caption = values.get(caption_column)
    if caption is not None and not isinstance(caption, str):
        # A number, a list or an object is not a caption: refused, never stored as its repr.
        return UrlRow(
            where=where,
            url=url,
            error=ROW_NOT_TEXT.format(field=caption_column, kind=kind_of(caption)),
        )
    if caption is not None and not caption.strip():
        caption = None
    row = UrlRow(
        where=where,
        url=url,
        caption=caption,
        license_name=_text(values.get("license")),
        license_url=_text(values.get("license_url")),
    )
    skip = {url_column, caption_column, *_LICENCE_COLUMNS}
    for key, value in list(values.items())[:EXTRA_MAX_KEYS]:
        if key in skip or value is None or value == "":
            continue
        safe_key = display_text(str(key), limit=100)
        if isinstance(value, bool | int | float):
            row.extra[safe_key] = value
        else:
            # Provenance is shown: a URL in it loses its credentials like the row's own.
            row.extra[safe_key] = display_text(
                text_redacted(value if isinstance(value, str) else json.dumps(value, default=str)),
                limit=EXTRA_MAX_CHARS,
            )
    if not url:
        row.error = ROW_NO_URL.format(column=url_column)
    else:
        row.error = (
            (
                _url_problem(url, field=url_column)
                if key_prefix is None
                else text_problem(url, field=url_column, max_chars=SOURCE_URL_MAX_CHARS)
            )
            or (text_problem(caption, field=caption_column) if caption is not None else "")
            or text_problem(row.license_name, field="license", max_chars=LICENSE_NAME_MAX_CHARS)
            or (
                _url_problem(row.license_url, field="license_url", max_chars=LICENSE_URL_MAX_CHARS)
                if row.license_url
                else ""
            )
        )
    return row


def _url_problem(url: str, *, field: str, max_chars: int = SOURCE_URL_MAX_CHARS) -> str:
    """url_problem, its message quoting the URL without the credentials it may carry."""
    problem = url_problem(url, field=field, max_chars=max_chars)
    shown = url_redacted(url)
    if not problem or shown == url:
        return problem
    # Where the problem was in the credentials, the redacted URL may pass: say it plainly.
    shown = shown if len(shown) <= 60 else shown[:57] + "…"
    return url_problem(shown, field=field, max_chars=max_chars) or ROW_BAD_URL.format(
        field=field, value=repr(shown)
    )


def kind_of(value: object) -> str:
    """What a value that should have been text is, for a person: "a number", "a list"…"""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    return f"a {type(value).__name__}"


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))
