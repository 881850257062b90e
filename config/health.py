"""``/healthz`` for load balancers: database, broker and storage, answered without a login.

A middleware rather than a view, placed first: a probe often comes by IP address (not in
``ALLOWED_HOSTS``) and over plain HTTP behind a TLS-terminating proxy, so it is answered before
host validation, HTTPS redirects and the login requirement. 200 when every check passes, 503
otherwise; the JSON body says which failed and with what kind of error (details go to the log,
not to an anonymous caller). Each check is one round trip: ``SELECT 1``, a broker connection,
a HEAD on each bucket (or a writable folder).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

PATH = "/healthz"
BROKER_TIMEOUT_SECONDS = 2.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        # One attempt: a probe that waits for retries is a probe that times out.
        conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
        if conn.transport_cls == "filesystem":
            # The embedded broker is a folder: connecting checks nothing, writing does.
            folder = Path(conn.transport_options.get("data_folder_in", "."))
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                raise PermissionError(f"{folder} is not a writable folder")


def check_storage() -> None:
    from config.storage import ALIASES, storage, storage_check

    checked = set()
    for alias in ALIASES:
        target = storage(alias)
        # Aliases that share a bucket (the default) are checked once.
        where = getattr(target, "bucket_name", None) or alias
        if where in checked:
            continue
        checked.add(where)
        try:
            storage_check(alias)
        except Exception as exc:
            raise RuntimeError(f"{alias}: {type(exc).__name__}") from exc


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
}


def health() -> tuple[bool, dict[str, str]]:
    """Run every check; ``(all passed, {check: "ok" or the kind of failure})``."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            logger.warning("Health check %s failed", name, exc_info=True)
            detail = str(exc) if name == "storage" else type(exc).__name__
            results[name] = f"failed: {detail}"
        else:
            results[name] = "ok"
    return all(value == "ok" for value in results.values()), results


class HealthCheckMiddleware:
    """Answers ``GET``/``HEAD /healthz`` itself; every other request passes through."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.rstrip("/") != PATH:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse({"detail": "Method not allowed."}, status=405)
        ok, checks = health()
        response = JsonResponse(
            {"status": "ok" if ok else "failed", "checks": checks}, status=200 if ok else 503
        )
        response["Cache-Control"] = "no-store"
        return response
