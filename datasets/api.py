"""The API's edges that every endpoint shares: errors are JSON, bodies are bounded.

Every error under ``/api/`` is a JSON object with a ``detail`` (and, for a bad value, the
field's name as key): DRF answers 400/401/403/404/405/429 itself; :func:`exception_handler`
adds 413 for bodies over Django's limits and :class:`BoundedJSONParser` refuses JSON that is
too large or nested too deeply; the ``handler*`` views answer Django's own 400/403/404/500 for
API paths (an unknown URL, an uncaught error) as JSON too, and leave pages to Django.
"""

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

API_PREFIX = "/api/"
# Deeper than any body the API takes (a list of ids is depth 2).
MAX_JSON_DEPTH = 32
TOO_LARGE = "The request is too large: at most {limit} bytes of data (files aside)."
TOO_MANY_FIELDS = "The request has too many fields or files."
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels."
NOT_JSON = "The body is not valid JSON."
NOT_FOUND = "Not found."
BAD_REQUEST = "Bad request."
FORBIDDEN = "You do not have permission to do this."
SERVER_ERROR = "Server error: the request could not be completed. It has been logged."


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (413) and JSON nested
    deeper than MAX_JSON_DEPTH (400), which would otherwise reach the serializers or overflow the
    stack. DRF reads the body from the request's stream, past Django's own size check."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise RequestDataTooBig(TOO_LARGE.format(limit=limit))
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ParseError(NOT_JSON) from exc
        if _depth(data) > MAX_JSON_DEPTH:
            raise ParseError(TOO_DEEP)
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

    return drf_exception_handler(exc, context)


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
