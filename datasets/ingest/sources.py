"""Parsers for existing datasets: COCO captions JSON and CSV/JSONL manifests.

They turn a file into plain rows, in file order, each with the line or id a person needs to find
it. A row the reader can already refuse (a stray quote, bytes that are not UTF-8, a NUL, a value
too long for its column, a URL that is not http/https, an id that is not an integer) carries its
reason in ``error``; every other row is handed on. Nothing a row holds can cost another row: only
a file that cannot be read at all (not JSON, no header with the required columns) raises
SourceError.

What is read, and how:

* **Encoding**: a byte-order mark decides (UTF-8, UTF-16, UTF-32). Otherwise the encoding the
  person chose (one of ENCODINGS), or, left at "auto", UTF-8; a CSV with no valid multi-byte
  UTF-8 sequence at all is taken to be in a legacy encoding and decoded as charset-normalizer
  detects it, Windows-1252 whenever it reads the file as cleanly as the best guess (short files
  read equally well in several code pages); the note says which. Bytes the encoding cannot
  decode refuse the rows that hold them, naming the byte.
* **CSV dialect**: the delimiter is sniffed (comma, semicolon, tab or bar) with csv.Sniffer and
  checked against the header, which must name the required columns; the note says which was
  used. Quotes are read strictly: a quote that is not closed where its field ends refuses its line
  only, and the lines after it are read on their own. A quoted field that runs over line breaks
  is kept (captions may hold them) unless a line it swallowed is itself a complete row.
* **Repeated names**: a header naming a column twice (in any case or spacing), a JSON object
  giving a key twice, or a COCO file with two top-level ``images`` lists cannot say which value
  is meant, so the file (header, top level) or the row (an object) is refused naming it, never
  read as "the last one wins".
"""

import codecs
import csv
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import charset_normalizer

COCO_MALFORMED = "Not valid COCO captions JSON: {detail}"
COCO_MISSING_KEY = "Missing top-level key '{key}' (a list)."
COCO_BAD_IMAGE = "needs an integer 'id' and a text 'file_name'."
COCO_DUPLICATE_ID = "image id {image_id} is listed again (first at images[{first}]); refused."
COCO_BAD_ANNOTATION = "needs an integer 'image_id' and a text 'caption'."
COCO_DUPLICATE_ANNOTATION = (
    "annotation id {ann_id} is listed again (first at annotations[{first}]); refused."
)
COCO_REPEATED_TOP_KEY = (
    "The top-level key '{key}' appears more than once; which one is meant is unclear. Keep one."
)
COCO_UNKNOWN_LICENSES = (
    "{count} image(s) name a licence id that 'licenses' does not list ({ids}): they are stored "
    "without a licence."
)
MANIFEST_REPEATED_COLUMN = (
    "The header names the column '{column}' {count} times (columns {positions}); which one "
    "holds the data is unclear. Keep one and send the file again."
)
MANIFEST_IGNORED_COLUMNS = "Ignored column(s) not used by Concord: {columns}."
ROW_REPEATED_KEY = "the key '{key}' is given more than once; which value is meant is unclear."
MANIFEST_MALFORMED = "Not valid {kind}: {detail}"
MANIFEST_MISSING_COLUMNS = (
    "Missing required column(s): {columns}. The header reads {header} (as {delimiter})."
)
MANIFEST_EMPTY = "The manifest holds no header line."
MANIFEST_UNKNOWN_FORMAT = "Manifest must end in .csv, .tsv, .jsonl or .ndjson, not '{suffix}'."
ROW_NEEDS = "needs 'image' and 'caption'."
ROW_EXTRA_VALUES = "more values than columns."
ROW_QUOTE = "a quote on this line is not closed where its field ends ({detail})."
ROW_SWALLOWED = (
    "a quote opened on this line runs on over line {last}, which holds a row of its own; "
    "this line is refused and the lines after it are read on their own."
)
ROW_FIELD_TOO_LARGE = "a field is larger than the CSV reader's limit of {limit:,} characters."
ROW_NOT_JSON = "not valid JSON ({detail})."
ROW_NOT_OBJECT = "not a JSON object."
ROW_NOT_TEXT = "'{field}' must be text, not {kind}."
ROW_NUL = "'{field}' contains a NUL character."
ROW_CONTROL = "'{field}' contains control characters."
ROW_NOT_UTF8 = "'{field}' holds {what} that are not UTF-8 ({detail})."
ROW_TOO_LONG = "'{field}' is longer than {limit:,} characters."
ROW_BAD_URL = "'{field}' must be an http or https URL, not {value}."
ROW_BAD_HOST = "'{field}' is not a valid URL (bad host): {value}."

MANIFEST_REQUIRED = ("image", "caption")
MANIFEST_COLUMNS = (*MANIFEST_REQUIRED, "license", "license_url", "source_url")
# Encodings a person may choose for a manifest ("auto": BOM, UTF-8, else detected), with labels.
ENCODINGS = {
    "auto": "Detect (UTF-8, or what the byte-order mark or the bytes say)",
    "utf-8": "UTF-8",
    "cp1252": "Windows-1252 (Western European, Excel)",
    "cp1250": "Windows-1250 (Central European)",
    "cp1251": "Windows-1251 (Cyrillic)",
    "iso-8859-1": "ISO-8859-1 (Latin-1)",
    "iso-8859-15": "ISO-8859-15 (Latin-9)",
    "mac_roman": "Mac OS Roman",
    "shift_jis": "Shift JIS (Japanese)",
    "gb18030": "GB18030 (Chinese)",
    "big5": "Big5 (Traditional Chinese)",
    "euc-kr": "EUC-KR (Korean)",
    "utf-16-le": "UTF-16 LE (without a byte-order mark)",
    "utf-16-be": "UTF-16 BE (without a byte-order mark)",
}
# Chaos (charset-normalizer's mess ratio) within which Windows-1252 counts as reading as well.
_CHAOS_TIE = 0.01
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}
# The longest value each Image column holds (datasets.models.Image; a test keeps them equal).
NAME_MAX_CHARS = 255
LICENSE_NAME_MAX_CHARS = 200
SOURCE_URL_MAX_CHARS = 1000
LICENSE_URL_MAX_CHARS = 500
URL_SCHEMES = ("http", "https")

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SNIFF_LINES = 50


class SourceError(ValueError):
    """The file as a whole cannot be read; nothing from it is imported."""


@dataclass
class SourceRow:
    """One row of an input file, as read: a manifest line, a COCO image or annotation entry.

    ``key`` is a COCO image entry's id; ``ref`` the image id a COCO annotation refers to.
    ``error`` is set when the row is refused while reading.
    """

    where: str
    file_name: str = ""
    caption: str | None = None
    license_name: str = ""
    license_url: str = ""
    source_url: str = ""
    key: str = ""
    ref: str = ""
    error: str = ""

    @property
    def name(self) -> str:
        return self.file_name or self.source_url


@dataclass
class ParsedSource:
    rows: list[SourceRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the file as a whole


def parse_coco(raw: bytes, *, encoding: str = "auto") -> ParsedSource:
    """Read a COCO captions file (info, licenses, images, annotations) into rows.

    Rows are the ``images`` entries in order, then the ``annotations`` entries in order. An image
    or annotation id listed twice keeps its first entry. ``encoding`` is one of ENCODINGS. Raises
    SourceError when the file is not JSON (or nests too deeply to read), lacks the
    ``images``/``annotations`` lists or gives one of its top-level keys twice.
    """
    text, notes = decode_text(raw, legacy_ok=False, encoding=encoding)
    try:
        data = json.loads(text, object_pairs_hook=_JsonObject.from_pairs)
    except json.JSONDecodeError as exc:
        raise SourceError(COCO_MALFORMED.format(detail=exc)) from exc
    except RecursionError as exc:
        raise SourceError(COCO_MALFORMED.format(detail="nested too deeply to read")) from exc
    if not isinstance(data, dict):
        raise SourceError(COCO_MALFORMED.format(detail="the top level is not an object"))
    if repeated := [key for key in ("images", "annotations", "licenses") if key in data.repeated]:
        raise SourceError(COCO_REPEATED_TOP_KEY.format(key=repeated[0]))
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise SourceError(COCO_MISSING_KEY.format(key=key))
    licenses = {}
    for entry in data.get("licenses") or []:
        if isinstance(entry, dict) and _is_int(entry.get("id")):
            licenses.setdefault(entry["id"], entry)

    parsed = ParsedSource(notes=notes)
    first_index: dict[int, int] = {}
    unknown_licenses: Counter = Counter()
    for index, entry in enumerate(data["images"]):
        parsed.rows.append(_coco_image(entry, index, licenses, first_index))
        if (
            isinstance(entry, dict)
            and _is_int(entry.get("license"))
            and entry["license"] not in licenses
            and not parsed.rows[-1].error
        ):
            unknown_licenses[entry["license"]] += 1
    if unknown_licenses:
        ids = ", ".join(str(key) for key in sorted(unknown_licenses)[:10])
        parsed.notes.append(
            COCO_UNKNOWN_LICENSES.format(count=sum(unknown_licenses.values()), ids=ids)
        )
    first_annotation: dict[int, int] = {}
    for index, entry in enumerate(data["annotations"]):
        parsed.rows.append(_coco_annotation(entry, index, first_annotation))
    return parsed


def parse_manifest(raw: bytes, *, name: str, encoding: str = "auto") -> ParsedSource:
    """Read a CSV/TSV or JSONL manifest: one row per caption with image, caption, and optionally
    license, license_url and source_url. The format follows the file name's suffix; the text's
    encoding is ``encoding`` (one of ENCODINGS; "auto" detects it).

    Raises SourceError for an unknown suffix, or a CSV whose header lacks the required columns
    or names one of them twice.
    """
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in ("csv", "tsv", "txt"):
        return _parse_csv(raw, encoding=encoding)
    if suffix in ("jsonl", "ndjson"):
        return _parse_jsonl(raw, encoding=encoding)
    raise SourceError(MANIFEST_UNKNOWN_FORMAT.format(suffix=f".{suffix}" if suffix else name))


def decode_text(raw: bytes, *, legacy_ok: bool, encoding: str = "auto") -> tuple[str, list[str]]:
    """Bytes to text, with notes on how (see the module docstring).

    ``encoding`` is one of ENCODINGS: "auto" detects (a legacy code page only when ``legacy_ok``);
    any other is used unless a byte-order mark says otherwise. Bytes the encoding cannot decode
    come back as lone surrogates (``surrogateescape``), so the rows that hold them are refused
    one by one (text_problem names them) and the rest is read. Raises ValueError for an encoding
    not in ENCODINGS.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"Unknown encoding {encoding!r}; one of {', '.join(ENCODINGS)}.")
    for bom, marked in _BOMS:
        if raw.startswith(bom):
            try:
                text = raw.decode(marked)
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"Not valid {marked.upper()} despite its byte-order mark: {exc}"
                ) from exc
            note = f"Read as {marked.upper()} (byte-order mark)."
            if encoding not in ("auto", marked.removesuffix("-sig")):
                note = f"Read as {marked.upper()} (byte-order mark), not {encoding} as chosen."
            return text, [note]
    if encoding == "auto" and (unmarked := _utf16_without_bom(raw)):
        try:
            return raw.decode(unmarked), [
                f"Read as {unmarked.upper()} (no byte-order mark; detected)."
            ]
        except UnicodeDecodeError:
            pass  # not UTF-16 after all: read on as below
    if encoding != "auto":
        text = raw.decode(encoding, "surrogateescape")
        notes = [f"Read as {encoding} (chosen)."]
        if _SURROGATE.search(text):
            notes.append(f"Some bytes are not {encoding}; the rows holding them are refused.")
        return text, notes
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    if legacy_ok and not _UTF8_MULTIBYTE.search(raw):
        detected = _legacy_guess(raw)
        if detected is not None:
            text, name = detected
            return text, [
                f"Not UTF-8: read as {name} (detected). If accents look wrong, import again "
                "choosing the file's encoding."
            ]
    return raw.decode("utf-8", "surrogateescape"), [
        "Some bytes are not UTF-8; the rows holding them are refused."
    ]


def _utf16_without_bom(raw: bytes) -> str:
    """ "utf-16-le" or "utf-16-be" when the bytes look like UTF-16 text written without a
    byte-order mark (every other byte NUL, as Latin-script text in UTF-16 is), else ""."""
    sample = raw[:4096]
    half = len(sample) // 2
    if half < 4 or b"\x00" not in sample:
        return ""
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    if odd > 0.3 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.3 * half and odd < 0.05 * half:
        return "utf-16-be"
    return ""


def _legacy_guess(raw: bytes) -> tuple[str, str] | None:
    """(text, encoding) of a file in a legacy code page, or None when nothing reads it.

    charset-normalizer ranks by "chaos" (how messy the text reads) and then by a language
    coherence score that is noise on a few lines: ``très`` reads as cleanly in Windows-1250
    (``trčs``) as in Windows-1252, and a two-row French file came out Slovak. Windows-1252 is
    Excel's default for the Western languages and by far the likeliest, so it wins whenever its
    chaos is within _CHAOS_TIE of the best guess's.
    """
    best = charset_normalizer.from_bytes(raw).best()
    western = charset_normalizer.from_bytes(raw, cp_isolation=["cp1252"]).best()
    if western is not None and (best is None or western.chaos <= best.chaos + _CHAOS_TIE):
        return str(western), "cp1252"
    if best is None:
        return None
    return str(best), best.encoding


def text_problem(value: str, *, field: str, max_chars: int | None = None) -> str:
    """Why a text value cannot be stored as it is (PostgreSQL refuses NUL and lone surrogates;
    columns have lengths), or an empty string."""
    if "\x00" in value:
        return ROW_NUL.format(field=field)
    if match := _SURROGATE.search(value):
        code = ord(match.group())
        if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape could not decode
            return ROW_NOT_UTF8.format(field=field, what="bytes", detail=f"0x{code - 0xDC00:02X}")
        return ROW_NOT_UTF8.format(field=field, what="characters", detail="an unpaired surrogate")
    if max_chars is not None and len(value) > max_chars:
        return ROW_TOO_LONG.format(field=field, limit=max_chars)
    return ""


def url_problem(value: str, *, field: str, max_chars: int) -> str:
    """Why a URL is not stored: anything but an absolute http(s) URL with a host, with no spaces
    or control characters, within the column's length. Empty string when it is fine."""
    if problem := text_problem(value, field=field, max_chars=max_chars):
        return problem
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    shown = value if len(value) <= 60 else value[:57] + "…"
    scheme, colon, rest = value.partition(":")
    if colon and scheme.lower() in URL_SCHEMES and rest.startswith("//"):
        # An http(s) URL whose host cannot be read ("[::1" unclosed, a space in the name): say
        # so, rather than that the scheme is wrong.
        host = rest[2:].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
        if (
            parts is None
            or not parts.hostname
            or any(char.isspace() or unicodedata.category(char) == "Cc" for char in host)
        ):
            return ROW_BAD_HOST.format(field=field, value=repr(shown))
    if (
        parts is None
        or parts.scheme.lower() not in URL_SCHEMES
        or not parts.netloc
        or any(char.isspace() or unicodedata.category(char) == "Cc" for char in value)
    ):
        return ROW_BAD_URL.format(field=field, value=repr(shown))
    return ""


def display_text(value: str, *, limit: int) -> str:
    """A value made safe to store and show as a message or label: control characters (NUL,
    terminal escapes) and undecodable bytes written as ``\\x..`` escapes, other lone surrogates
    as U+FFFD, cut to ``limit`` characters."""
    value = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", value)
    if _SURROGATE.search(value):
        value = _SURROGATE.sub(_escape_surrogate, value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def message_text(value: str, *, limit: int) -> str:
    """display_text for a message made from an exception's text: its line breaks and other runs
    of whitespace (libraries end messages with a newline) become one space, not ``\\x0a``."""
    return display_text(" ".join(value.split()), limit=limit)


def _escape_surrogate(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "\ufffd"


def name_problem(value: str, *, field: str = "image") -> str:
    """Why a file name cannot be stored or looked up: NUL, control characters, bytes that are
    not UTF-8, or longer than Image.original_name holds. Empty string when it is fine."""
    if problem := text_problem(value, field=field, max_chars=NAME_MAX_CHARS):
        return problem
    if any(unicodedata.category(char) == "Cc" for char in value):
        return ROW_CONTROL.format(field=field)
    return ""


def _coco_image(
    entry: object, index: int, licenses: dict, first_index: dict[int, int]
) -> SourceRow:
    if not isinstance(entry, dict) or not _is_int(entry.get("id")):
        return SourceRow(where=f"images[{index}]", error=COCO_BAD_IMAGE)
    image_id = entry["id"]
    row = SourceRow(where=f"image id {image_id}", key=str(image_id))
    if repeated := _repeated(entry, ("id", "file_name", "license", "flickr_url", "coco_url")):
        row.key = ""
        row.error = ROW_REPEATED_KEY.format(key=repeated)
        return row
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        row.error = COCO_BAD_IMAGE
        return row
    row.file_name = file_name.strip()
    if image_id in first_index:
        row.key = ""  # annotations go to the first entry with this id
        row.error = COCO_DUPLICATE_ID.format(image_id=image_id, first=first_index[image_id])
        return row
    first_index[image_id] = index
    licence = licenses.get(entry.get("license")) if _is_int(entry.get("license")) else None
    licence = licence or {}
    values = {
        "license_name": _as_text(licence.get("name")),
        "license_url": _as_text(licence.get("url")),
        "source_url": _as_text(entry.get("flickr_url")) or _as_text(entry.get("coco_url")),
    }
    row.license_name = values["license_name"].strip()
    row.license_url = values["license_url"].strip()
    row.source_url = values["source_url"].strip()
    row.error = (
        name_problem(row.file_name, field="file_name")
        or _provenance_problem(row, url_fields=("flickr_url", "coco_url"), entry=entry)
        or _licence_problem(licence, row)
    )
    return row


def _coco_annotation(entry: object, index: int, first_index: dict[int, int]) -> SourceRow:
    where = f"annotations[{index}]"
    if isinstance(entry, dict) and _is_int(entry.get("id")):
        where = f"annotation id {entry['id']}"
        if repeated := _repeated(entry, ("id", "image_id", "caption")):
            return SourceRow(where=where, error=ROW_REPEATED_KEY.format(key=repeated))
        if entry["id"] in first_index:
            error = COCO_DUPLICATE_ANNOTATION.format(
                ann_id=entry["id"], first=first_index[entry["id"]]
            )
            return SourceRow(where=where, error=error)
        first_index[entry["id"]] = index
    elif isinstance(entry, dict) and (repeated := _repeated(entry, ("image_id", "caption"))):
        return SourceRow(where=where, error=ROW_REPEATED_KEY.format(key=repeated))
    if (
        not isinstance(entry, dict)
        or not _is_int(entry.get("image_id"))
        or not isinstance(entry.get("caption"), str)
    ):
        return SourceRow(where=where, error=COCO_BAD_ANNOTATION)
    row = SourceRow(where=where, caption=entry["caption"], ref=str(entry["image_id"]))
    row.error = text_problem(row.caption, field="caption")
    return row


def _licence_problem(licence: dict, row: SourceRow) -> str:
    if repeated := _repeated(licence, ("id", "name", "url")):
        return ROW_REPEATED_KEY.format(key=f"license {repeated}")
    for key in ("name", "url"):
        value = licence.get(key)
        if value is not None and not isinstance(value, str | int | float):
            return ROW_NOT_TEXT.format(field=f"license {key}", kind=type(value).__name__)
    return ""


def _provenance_problem(row: SourceRow, *, url_fields: tuple[str, ...], entry: dict) -> str:
    for key in url_fields:  # COCO names two URLs; neither may be unsafe, whichever is kept
        value = entry.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            return ROW_NOT_TEXT.format(field=key, kind=type(value).__name__)
        if problem := url_problem(value.strip(), field=key, max_chars=SOURCE_URL_MAX_CHARS):
            return problem
    return text_problem(row.license_name, field="license", max_chars=LICENSE_NAME_MAX_CHARS) or (
        url_problem(row.license_url, field="license url", max_chars=LICENSE_URL_MAX_CHARS)
        if row.license_url
        else ""
    )


def _parse_csv(raw: bytes, *, encoding: str) -> ParsedSource:
    text, notes = decode_text(raw, legacy_ok=True, encoding=encoding)
    lines = list(io.StringIO(text, newline=""))
    header_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_at is None:
        raise SourceError(MANIFEST_EMPTY)
    delimiter, columns = _dialect(lines, header_at)
    notes.insert(0, f"Read as {DELIMITER_NAMES[delimiter]}-separated values.")
    for column in MANIFEST_COLUMNS:
        positions = [str(at + 1) for at, name in enumerate(columns) if name == column]
        if len(positions) > 1:
            raise SourceError(
                MANIFEST_REPEATED_COLUMN.format(
                    column=column, count=len(positions), positions=", ".join(positions)
                )
            )
    ignored = [name for name in columns if name not in MANIFEST_COLUMNS]
    if ignored:
        shown = ", ".join(repr(display_text(name, limit=40)) for name in ignored[:10])
        notes.append(MANIFEST_IGNORED_COLUMNS.format(columns=shown))
    parsed = ParsedSource(notes=notes)
    for line, cells, error in _csv_records(lines, header_at + 1, delimiter, len(columns)):
        where = f"line {line}"
        if error:
            parsed.rows.append(SourceRow(where=where, error=error))
        elif len(cells) > len(columns):
            parsed.rows.append(SourceRow(where=where, error=ROW_EXTRA_VALUES))
        else:
            values = dict(zip(columns, cells, strict=False))
            parsed.rows.append(_manifest_row(where, values))
    return parsed


def _dialect(lines: list[str], header_at: int) -> tuple[str, list[str]]:
    """The delimiter (sniffed, then checked against the required columns) and the column names."""
    sample = "".join(lines[header_at : header_at + _SNIFF_LINES])
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITER_NAMES)).delimiter
    except csv.Error:
        sniffed = ","
    candidates = [sniffed] + [d for d in DELIMITER_NAMES if d != sniffed]
    for delimiter in candidates:
        columns = _header(lines[header_at], delimiter)
        if all(name in columns for name in MANIFEST_REQUIRED):
            return delimiter, columns
    columns = _header(lines[header_at], sniffed)
    missing = [name for name in MANIFEST_REQUIRED if name not in columns]
    raise SourceError(
        MANIFEST_MISSING_COLUMNS.format(
            columns=", ".join(missing),
            header=", ".join(repr(c[:40]) for c in columns[:8]),
            delimiter=f"{DELIMITER_NAMES[sniffed]}-separated",
        )
    )


def _header(line: str, delimiter: str) -> list[str]:
    try:
        cells = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        # A header the strict reader refuses (a name over its field limit, a stray quote) is
        # still split on the delimiter, so the columns it does name are found and shown.
        cells = [cell.strip().strip('"') for cell in line.rstrip("\r\n").split(delimiter)]
    return [cell.strip().lower() for cell in cells]


class _Lines:
    """An iterator over physical lines that remembers where it is, so reading can restart."""

    def __init__(self, lines: list[str], start: int):
        self.lines, self.at = lines, start

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self.at >= len(self.lines):
            raise StopIteration
        self.at += 1
        return self.lines[self.at - 1]


def _csv_records(
    lines: list[str], start: int, delimiter: str, width: int
) -> Iterator[tuple[int, list[str], str]]:
    """(1-based line, cells, error) per record; a malformed record refuses its first line only."""
    at = start
    while at < len(lines):
        if not lines[at].strip():
            at += 1
            continue
        cursor = _Lines(lines, at)
        reader = csv.reader(cursor, delimiter=delimiter, quotechar='"', strict=True)
        try:
            cells = next(reader)
        except csv.Error as exc:
            detail = str(exc)
            if "field larger than field limit" in detail:
                error = ROW_FIELD_TOO_LARGE.format(limit=csv.field_size_limit())
            else:
                error = ROW_QUOTE.format(detail=detail)
            yield at + 1, [], error
            at += 1
            continue
        end = cursor.at
        swallowed = _swallowed_row(lines[at + 1 : end], delimiter, width)
        if swallowed is not None:
            yield at + 1, [], ROW_SWALLOWED.format(last=at + 2 + swallowed)
            at += 1
            continue
        yield at + 1, cells, ""
        at = end


def _swallowed_row(continuation: list[str], delimiter: str, width: int) -> int | None:
    """Index of a line inside a multi-line field that is a complete row by itself: no quote,
    between two and ``width`` cells, a non-empty first cell. None when there is none."""
    for index, line in enumerate(continuation):
        if '"' in line or not line.strip():
            continue
        try:
            cells = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter, strict=True))
        except (csv.Error, StopIteration):
            continue
        if 2 <= len(cells) <= width and cells[0].strip():
            return index
    return None


def _parse_jsonl(raw: bytes, *, encoding: str) -> ParsedSource:
    text, notes = decode_text(raw, legacy_ok=False, encoding=encoding)
    parsed = ParsedSource(notes=notes)
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            row = json.loads(line, object_pairs_hook=_JsonObject.from_pairs)
        except json.JSONDecodeError as exc:
            detail = f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
            parsed.rows.append(SourceRow(where=where, error=ROW_NOT_JSON.format(detail=detail)))
            continue
        except RecursionError:
            error = ROW_NOT_JSON.format(detail="nested too deeply to read")
            parsed.rows.append(SourceRow(where=where, error=error))
            continue
        if not isinstance(row, dict):
            parsed.rows.append(SourceRow(where=where, error=ROW_NOT_OBJECT))
            continue
        # Keys are read like CSV headers: in any case, spaces around them ignored.
        keys = [key.strip().lower() for key in row.keys_in_order]
        repeated = next(
            (key for key in MANIFEST_COLUMNS if keys.count(key) > 1),
            None,
        )
        row = {key.strip().lower(): value for key, value in row.items()}
        if repeated is not None:
            error = ROW_REPEATED_KEY.format(key=repeated)
            image = row.get("image")
            parsed.rows.append(
                SourceRow(
                    where=where, file_name=image if isinstance(image, str) else "", error=error
                )
            )
            continue
        bad = next(
            (
                key
                for key in ("image", "caption", "license", "license_url", "source_url")
                if row.get(key) is not None and not isinstance(row[key], str)
            ),
            None,
        )
        if bad is not None:
            error = ROW_NOT_TEXT.format(field=bad, kind=_json_kind(row[bad]))
            parsed.rows.append(
                SourceRow(
                    where=where,
                    file_name=row["image"] if isinstance(row.get("image"), str) else "",
                    error=error,
                )
            )
            continue
        parsed.rows.append(_manifest_row(where, row))
    return parsed


def _manifest_row(where: str, values: dict) -> SourceRow:
    image = (values.get("image") or "").strip()
    caption = values.get("caption")
    row = SourceRow(
        where=where,
        file_name=image,
        caption=caption,
        license_name=(values.get("license") or "").strip(),
        license_url=(values.get("license_url") or "").strip(),
        source_url=(values.get("source_url") or "").strip(),
    )
    if not image or caption is None:
        row.error = ROW_NEEDS
        return row
    row.error = (
        name_problem(image)
        or text_problem(caption, field="caption")
        or text_problem(row.license_name, field="license", max_chars=LICENSE_NAME_MAX_CHARS)
        or (
            url_problem(row.source_url, field="source_url", max_chars=SOURCE_URL_MAX_CHARS)
            if row.source_url
            else ""
        )
        or (
            url_problem(row.license_url, field="license_url", max_chars=LICENSE_URL_MAX_CHARS)
            if row.license_url
            else ""
        )
    )
    return row


class _JsonObject(dict):
    """A JSON object that remembers its keys as written, repeats included (a plain dict keeps
    the last value of a repeated key and forgets there was another)."""

    keys_in_order: tuple[str, ...] = ()
    repeated: frozenset[str] = frozenset()

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, object]]) -> "_JsonObject":
        made = cls(pairs)
        made.keys_in_order = tuple(key for key, _ in pairs)
        if len(made) != len(pairs):
            made.repeated = frozenset(k for k, n in Counter(made.keys_in_order).items() if n > 1)
        return made


def _repeated(entry: dict, keys: tuple[str, ...]) -> str:
    """The first of ``keys`` the JSON object gives more than once, or an empty string."""
    repeated = getattr(entry, "repeated", frozenset())
    return next((key for key in keys if key in repeated), "")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _json_kind(value: object) -> str:
    return {dict: "an object", list: "a list", bool: "true/false", int: "a number"}.get(
        type(value), type(value).__name__
    )
