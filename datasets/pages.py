"""Edge helpers the pages of every stage share (no stage imports another's views for them)."""

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse


def post_only(back: str, action: str) -> Callable:
    """``require_POST`` with a page: a GET (a bookmarked or typed address of a button's action)
    answers 405 in the site's layout, saying to use the button, not a blank page.

    ``back`` names the URL of the page that holds the button; it is reversed with the view's
    ``slug`` and ``job_id`` arguments (whichever it has). ``action`` is said on the page in words
    ("cancel an import"). The 405 comes before any access check, as ``require_POST``'s did.
    """

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method != "POST":
                where = {k: v for k, v in kwargs.items() if k in ("slug", "job_id")}
                context = {"action": action, "back": reverse(back, kwargs=where)}
                response = render(request, "405.html", context, status=405)
                response["Allow"] = "POST"
                return response
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
