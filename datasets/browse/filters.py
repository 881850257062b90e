"""The data browser's filter spec: query parameters in, a typed, validated spec out (pure).

One spec serves the pair list, the image grid and the pair list API, so a filtered view is the
same URL on the page and in the API (``FilterSpec.query()`` gives its canonical parameters).
Parsing never raises anything but :class:`FilterError`, which names the parameter: pages show its
message, the API answers 400 with ``{param: [message]}``. Odd input (NUL bytes, lone surrogates,
numbers with thousands of digits, NaN, forged cursors) ends there, never in the database.
"""

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from urllib.parse import unquote_to_bytes

# Which values each choice parameter takes (the same strings as the models' choices, kept here
# as plain data so that this module imports no Django).
LABELS = ("match", "no_match", "none")
STATUSES = ("unjudged", "pending", "agreed", "disputed", "waiting", "adjudicated")
YES_NO = ("yes", "no")
DUPLICATES = ("unique", "canonical", "duplicate")
SPLITS = ("train", "val", "test", "none")
# datasets.models.Source's values (a pure core does not import the models; a test compares).
SOURCES = (
    "upload",
    "api",
    "zip",
    "coco",
    "manifest",
    "url",
    "bucket",
    "demo",
    "annotator",
    "text_edit",
)
KINDS = ("positive", "random_negative", "hard_negative", "text_edit_negative")
# Sort keys: the column (nullable ones sort their nulls last either way) and its direction.
SORTS = (
    "-id",
    "id",
    "confidence",
    "-confidence",
    "agreement",
    "-agreement",
    "score",
    "-score",
)
IMAGE_SORTS = ("-id", "id")
DEFAULT_SORT = "-id"

# The model's score at or above which it says "match", for its disagreement with the crowd.
MODEL_MATCH_SCORE = 0.5
MAX_TEXT = 200
MAX_NUMBER_CHARS = 32
MAX_CURSOR_CHARS = 200
MAX_CAPTIONS = 100_000
MAX_SCORE = 1e6
MAX_ID = 2**63 - 1

# Error messages (tests assert on them).
UNKNOWN_PARAM = "Unknown filter."
BAD_CHOICE = "Must be one of: {choices}."
BAD_TEXT = "Text must be at most {limit} characters of valid Unicode without NUL bytes."
BAD_NUMBER = "Must be a number between {low:g} and {high:g}."
BAD_INTEGER = "Must be a whole number between 0 and {high}."
BAD_RANGE = "The minimum is above the maximum."
BAD_CURSOR = "This page link is not valid (or belongs to another sort); start from the first page."
IMAGES_SORT = "The image grid sorts by id only."
GIVEN_TWICE = "Given twice; give each parameter once."
NO_NAME = "A parameter has no name (a stray '=' or '&' in the address)."
BAD_BYTES = "Not valid UTF-8 text (the address holds bytes that are no characters)."
# What a nameless parameter is called in an error (it has no name of its own to show).
NAMELESS = "(no name)"


class FilterError(ValueError):
    """A query parameter that cannot be used: ``param`` names it, ``message`` says why."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None

    @property
    def is_set(self) -> bool:
        return self.low is not None or self.high is not None


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended: the sort it belongs to, its last sort value and id."""

    sort: str
    value: float | None
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.sort, self.value, self.id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class FilterSpec:
    """What to show. Empty strings and unset ranges filter nothing."""

    q: str = ""
    label: str = ""
    status: str = ""
    confidence: Range = Range()
    agreement: Range = Range()
    flagged: str = ""
    duplicate: str = ""
    split: str = ""
    source: str = ""
    license: str = ""
    captions: Range = Range()
    annotator: str = ""
    kind: str = ""
    score: Range = Range()
    disagree: str = ""
    excluded: str = ""
    gold: str = ""
    sort: str = DEFAULT_SORT
    cursor: Cursor | None = None

    def query(self, *, cursor: Cursor | None = None) -> dict[str, str]:
        """The canonical query parameters of this view (shareable), optionally at a page."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Range):
                if value.low is not None:
                    out[f"{f.name}_min"] = _number_text(value.low)
                if value.high is not None:
                    out[f"{f.name}_max"] = _number_text(value.high)
            elif f.name == "sort":
                if value != DEFAULT_SORT:
                    out["sort"] = value
            elif f.name == "cursor":
                continue
            elif value:
                out[f.name] = value
        if cursor is not None:
            out["cursor"] = cursor.encode()
        return out

    @property
    def is_filtered(self) -> bool:
        return bool(set(self.query()) - {"sort"})

    def first_page(self) -> "FilterSpec":
        return replace(self, cursor=None)


_CHOICES = {
    "label": LABELS,
    "status": STATUSES,
    "flagged": YES_NO,
    "duplicate": DUPLICATES,
    "split": SPLITS,
    "source": SOURCES,
    "kind": KINDS,
    "disagree": YES_NO,
    "excluded": YES_NO,
    "gold": YES_NO,
}
_TEXTS = ("q", "license", "annotator")
# Range name → (lowest, highest, whole numbers only).
_RANGES = {
    "confidence": (0.0, 1.0, False),
    "agreement": (0.0, 1.0, False),
    "score": (-MAX_SCORE, MAX_SCORE, False),
    "captions": (0, MAX_CAPTIONS, True),
}
PARAMS = frozenset(
    [*_CHOICES, *_TEXTS, "sort", "cursor"]
    + [f"{name}_{end}" for name in _RANGES for end in ("min", "max")]
)


def filter_parse(params: Mapping[str, str], *, images: bool = False) -> FilterSpec:
    """A validated spec from query parameters (one string per name: the last one given).

    ``images`` parses for the image grid, which sorts by id only. Raises :class:`FilterError`
    on the first unknown name or bad value, in a fixed order (names sorted).
    """
    for name in sorted(params):
        if name not in PARAMS:
            raise FilterError(printable(name), UNKNOWN_PARAM)
    values: dict[str, object] = {}
    for name, choices in _CHOICES.items():
        raw = _text(params, name)
        if raw and raw not in choices:
            raise FilterError(name, BAD_CHOICE.format(choices=", ".join(choices)))
        values[name] = raw
    for name in _TEXTS:
        values[name] = " ".join(_text(params, name).split())
    for name, (low, high, whole) in _RANGES.items():
        bounds = [
            _number(params, f"{name}_{end}", low=low, high=high, whole=whole)
            for end in ("min", "max")
        ]
        if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
            raise FilterError(f"{name}_min", BAD_RANGE)
        values[name] = Range(*bounds)
    sort = _text(params, "sort") or DEFAULT_SORT
    allowed = IMAGE_SORTS if images else SORTS
    if sort not in allowed:
        raise FilterError(
            "sort", IMAGES_SORT if images else BAD_CHOICE.format(choices=", ".join(SORTS))
        )
    values["sort"] = sort
    raw_cursor = _text(params, "cursor", limit=MAX_CURSOR_CHARS)
    values["cursor"] = cursor_decode(raw_cursor, sort=sort) if raw_cursor else None
    return FilterSpec(**values)  # type: ignore[arg-type]


def filter_errors(params: Mapping[str, str], *, images: bool = False) -> list[FilterError]:
    """Every error in ``params``, not only the first (for a page that lists them all): each
    parameter on its own, then (when each is fine) the whole, for checks across parameters."""
    errors = []
    for name in sorted(params):
        alone = {name: params[name]}
        if name == "cursor" and "sort" in params:  # a cursor belongs to its sort
            alone["sort"] = params["sort"]
        try:
            filter_parse(alone, images=images)
        except FilterError as exc:
            errors.append(exc)
    if not errors:
        try:
            filter_parse(params, images=images)
        except FilterError as exc:
            errors.append(exc)
    return errors


def search_terms(q: str) -> tuple[list[str], list[str]]:
    """The words (or "quoted phrases") a caption search needs, and those it excludes (``-word``,
    ``-"a phrase"``), as PostgreSQL's websearch_to_tsquery reads them; for the fallback search
    of other databases. A lone ``-`` or empty quotes are nothing."""
    include: list[str] = []
    exclude: list[str] = []
    i, n = 0, len(q)
    while i < n:
        if q[i].isspace():
            i += 1
            continue
        negated = q[i] == "-"
        if negated:
            i += 1
        if i < n and q[i] == '"':
            end = q.find('"', i + 1)
            end = n if end == -1 else end
            term, i = q[i + 1 : end], end + 1
        else:
            start = i
            while i < n and not q[i].isspace():
                i += 1
            term = q[start:i]
        term = " ".join(term.replace('"', " ").split())
        if term:
            (exclude if negated else include).append(term)
    return include, exclude


def query_parse(raw: bytes) -> dict[str, str]:
    """One string per name from a raw (still percent-encoded) query string, strictly.

    Unlike a browser's lenient decoding, a name given twice, a nameless ``=value``, and bytes
    that are not UTF-8 (which Django would turn into U+FFFD and search for) raise
    :class:`FilterError` naming the parameter. Empty pieces (``a=1&&b=2``) are skipped.
    """
    pairs: list[tuple[str, str]] = []
    for piece in raw.split(b"&"):
        if not piece:
            continue
        name_raw, _, value_raw = piece.partition(b"=")
        name = _strict(name_raw, NAMELESS, fallback_name=True)
        if not name:
            raise FilterError(NAMELESS, NO_NAME)
        pairs.append((name, _strict(value_raw, name)))
    return params_once(pairs)


def params_once(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """A dict of (name, value) pairs; FilterError(name, GIVEN_TWICE) for a name given twice."""
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise FilterError(printable(name), GIVEN_TWICE)
        out[name] = value
    return out


def _strict(raw: bytes, name: str, *, fallback_name: bool = False) -> str:
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        shown = printable(decoded.decode("utf-8", "replace")) if fallback_name else name
        raise FilterError(shown or NAMELESS, BAD_BYTES) from None


def cursor_decode(raw: str, *, sort: str) -> Cursor:
    """The cursor of a page link, checked to belong to ``sort``; FilterError("cursor") if not."""
    try:
        padded = raw + "=" * (-len(raw) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise FilterError("cursor", BAD_CURSOR) from None
    if not (isinstance(decoded, list) and len(decoded) == 3):
        raise FilterError("cursor", BAD_CURSOR)
    cursor_sort, value, last_id = decoded
    ok_id = type(last_id) is int and 0 <= last_id <= MAX_ID
    numeric = sort.lstrip("-") != "id"
    if numeric:
        # Rows without a value are left out of such a sort, so a cursor always has one.
        ok_value = type(value) in (int, float) and math.isfinite(value) and abs(value) <= MAX_SCORE
    else:
        ok_value = value is None
    if cursor_sort != sort or not ok_id or not ok_value:
        raise FilterError("cursor", BAD_CURSOR)
    return Cursor(sort=sort, value=float(value) if numeric else None, id=last_id)


def _text(params: Mapping[str, str], name: str, *, limit: int = MAX_TEXT) -> str:
    raw = params.get(name, "")
    if not isinstance(raw, str):
        raise FilterError(name, BAD_TEXT.format(limit=limit))
    if len(raw) > limit or "\x00" in raw or not _encodable(raw):
        raise FilterError(name, BAD_TEXT.format(limit=limit))
    return raw.strip()


def _number(
    params: Mapping[str, str], name: str, *, low: float, high: float, whole: bool
) -> float | None:
    raw = _text(params, name, limit=MAX_NUMBER_CHARS)
    if not raw:
        return None
    message = BAD_INTEGER.format(high=int(high)) if whole else BAD_NUMBER.format(low=low, high=high)
    try:
        value: float = int(raw) if whole else float(raw)
    except ValueError:
        raise FilterError(name, message) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise FilterError(name, message)
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def printable(name: str) -> str:
    """A parameter name fit to show in an error: valid text, NUL spelled out, at most 50."""
    name = name if _encodable(name) else name.encode("utf-8", "replace").decode()
    return name.replace("\x00", "\\0")[:50]


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
