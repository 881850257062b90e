"""The API's edges that every endpoint shares: errors are JSON, bodies are bounded.

Every error under ``/api/`` is a JSON object with a ``detail`` string (and, for a bad value,
the field's name as key with its messages: :func:`error_body`): DRF answers
400/401/403/404/405/429 itself; :func:`exception_handler` adds 413 for bodies over Django's limits and :class:`BoundedJSONParser` refuses JSON that is
too large or nested too deeply, and text no encoding can store (400 naming the field); the
``handler*`` views answer Django's own 400/403/404/500 for API paths (an unknown URL, an
uncaught error) as JSON too, and leave pages to Django. Paging cursors are checked in
:mod:`datasets.pagination`.
"""

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

API_PREFIX = "/api/"
# Deeper than any body the API takes (a list of ids is depth 2).
MAX_JSON_DEPTH = 32
TOO_LARGE = "The request is too large: at most {limit} bytes of data (files aside)."
TOO_MANY_FIELDS = "The request has too many fields or files."
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels."
# JSON may escape a lone UTF-16 surrogate ("\\ud800"); no UTF-8 text, database or response
# can hold one, and echoing it in an error would fail too.
NOT_TEXT = (
    "Not valid text: it holds a lone surrogate (\\ud800–\\udfff), which no encoding can store."
)
NOT_JSON = "The body is not valid JSON."
NOT_AN_ID = "Must be an id: digits, at most {max}."
# Every id and number a client names: a signed 64-bit integer (ids are BigAutoFields). Past it
# SQLite raises OverflowError in a lookup Django does not range-check (a foreign key's).
ID_MAX = 2**63 - 1
NOT_FOUND = "Not found."
BAD_REQUEST = "Bad request."
KEY_TWICE = "The JSON body gives the key {key} twice; give each key once."
FORBIDDEN = "You do not have permission to do this."
SERVER_ERROR = "Server error: the request could not be completed. It has been logged."


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (413), JSON nested
    deeper than MAX_JSON_DEPTH (400), which would otherwise reach the serializers or overflow the
    stack, and strings holding a lone surrogate (400 naming the top-level field), which would
    fail in the database or in the error that echoes them. DRF reads the body from the
    request's stream, past Django's own size check. (Form bodies cannot carry a surrogate:
    Django decodes them replacing what is not UTF-8.)"""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise RequestDataTooBig(TOO_LARGE.format(limit=limit))
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(
                raw.decode(encoding),
                parse_constant=_refuse_constant,
                object_pairs_hook=_keys_once,
            )
        except _KeyTwice as twice:
            raise ParseError(KEY_TWICE.format(key=twice.key)) from twice
        except (ValueError, RecursionError) as exc:
            raise ParseError(NOT_JSON) from exc
        if _depth(data) > MAX_JSON_DEPTH:
            raise ParseError(TOO_DEEP)
        if (where := _lone_surrogate_at(data)) is not None:
            if where == "":
                raise ParseError(NOT_TEXT)
            raise ValidationError({where: [NOT_TEXT]})
        return data


def query_id(request, name: str) -> int | None:
    """The id in query parameter ``name`` (None when absent or blank). Raises DRF's
    ValidationError naming the parameter unless it is ASCII digits within ID_MAX ("²" is a
    digit to str.isdigit(), not to int())."""
    value = request.query_params.get(name)
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > ID_MAX:
        raise ValidationError({name: [NOT_AN_ID.format(max=ID_MAX)]})
    return int(value)


class _KeyTwice(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        # repr() escapes what cannot be shown (a lone surrogate, a control character).
        self.key = repr(key)[:60]


def _keys_once(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object as a dict, refusing a key given twice: json.loads would keep the last,
    so {"action": "gold", "action": "ungold"} would silently do the second."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _KeyTwice(key)
            seen.add(key)
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _depth(value) -> int:
    """How deeply lists and objects nest (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogate_at(data) -> str | None:
    """Where in the parsed body a string (a value or a key, at any depth) holds a lone
    surrogate: the top-level field's name (its own surrogates escaped), "" for a body that is
    not an object, None when there is none. Without recursion (the depth is checked first)."""
    items = data.items() if isinstance(data, dict) else [("", data)]
    for field, value in items:
        if not _is_text(field):
            return field.encode("utf-8", "backslashreplace").decode("utf-8")
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if not _is_text(item):
                    return field
            elif isinstance(item, dict):
                for key, child in item.items():
                    if not _is_text(key):
                        return field
                    stack.append(child)
            elif isinstance(item, list):
                stack.extend(item)
    return None


def exception_handler(exc, context) -> Response | None:
    """DRF's handler, plus 413 for request bodies over Django's size and count limits."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {"detail": TOO_LARGE.format(limit=limit)},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return Response(
            {"detail": TOO_MANY_FIELDS}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    # Imported here: rest_framework.views reads the parser setting, which names this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is not None and response.status_code >= 400:
        response.data = error_body(response.data)
    return response


def error_body(data) -> dict:
    """Every API error's one shape: an object with a ``detail`` string, and for bad values
    each field's name with its list of messages (DRF's own shape, which has no ``detail``).
    The ``detail`` of field errors says the first of them, with its field."""
    if isinstance(data, dict):
        if isinstance(data.get("detail"), str):
            return data
        for field, messages in data.items():
            first = messages[0] if isinstance(messages, list) and messages else messages
            text = str(first) if isinstance(first, str) else "invalid value"
            detail = text if field == "non_field_errors" else f"{field}: {text}"
            return {"detail": detail, **data}
        return {"detail": BAD_REQUEST}
    if isinstance(data, list):
        first = data[0] if data else BAD_REQUEST
        return {"detail": str(first), "non_field_errors": data}
    return {"detail": str(data)}


class JsonErrorsMiddleware:
    """Every error under ``/api/`` is JSON, whoever answered it: Django's own pages (with
    DEBUG on, an unknown API path gets Django's technical 404 page, not ``handler404``), or a
    view that answered with HTML. Headers (Allow, Retry-After, WWW-Authenticate) are kept. A 500
    with DEBUG on keeps Django's page, whose traceback is the point of DEBUG."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400 or not is_api(request):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return self._with_detail(response)
        if response.status_code >= 500 and settings.DEBUG:
            return response
        detail = {400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND}.get(
            response.status_code, response.reason_phrase
        )
        replaced = JsonResponse({"detail": detail}, status=response.status_code)
        for header, value in response.items():
            if header.lower() not in ("content-type", "content-length"):
                replaced[header] = value
        return replaced

    @staticmethod
    def _with_detail(response: HttpResponse) -> HttpResponse:
        """A JSON error a view answered itself (``Response({"field": [...]}, status=400)``,
        past the exception handler) gets its ``detail`` too (error_body)."""
        if getattr(response, "streaming", False):
            return response
        try:
            data = json.loads(response.content)
        except ValueError:
            return response
        body = error_body(data)
        if body is not data:
            response.content = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response


def bad_request(request: HttpRequest, exception=None) -> HttpResponse:
    if is_api(request):
        if isinstance(exception, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return JsonResponse({"detail": TOO_LARGE.format(limit=limit)}, status=413)
        if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
            return JsonResponse({"detail": TOO_MANY_FIELDS}, status=413)
        return JsonResponse({"detail": BAD_REQUEST}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": str(exception or "") or FORBIDDEN}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": NOT_FOUND}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": SERVER_ERROR}, status=500)
    return defaults.server_error(request)
