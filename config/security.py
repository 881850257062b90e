"""Responses that no cache may keep: everything a signed-in person sees and the whole API.

Pages of a signed-in person and API answers carry what only they may read (API tokens shown
once, invitation links, members' names, captions); a shared proxy or the browser's disk cache
must not keep them, nor show them after logging out. Responses that say their own caching
(stored files: ``config.storage``; static files) keep it.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from datasets.api import is_api


class PrivateResponsesMiddleware:
    """``Cache-Control: max-age=0, no-cache, no-store, must-revalidate, private`` on every API
    response and every response to a signed-in person, unless the view set Cache-Control.
    Placed after the authentication middleware, which sets ``request.user``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.has_header("Cache-Control"):
            return response
        user = getattr(request, "user", None)
        if is_api(request) or (user is not None and user.is_authenticated):
            add_never_cache_headers(response)
        return response
