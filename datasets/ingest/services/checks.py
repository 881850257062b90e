"""System checks of the collection settings (CONCORD_COLLECT_*), run by ``manage.py check``, at
every startup of a management command or server, and by a collection's fetch task before it
fetches: a wrong setting is named once, by its name, instead of failing every row (or every
task) in a way nobody reads.

``collection_settings_problems`` is the check itself, without Django's check framework, so the
fetch task can pause a job with the same words.
"""

import ipaddress
import os
import ssl

from django.conf import settings
from django.core import checks

# Settings that must be whole numbers of at least 1, and those that may be 0.
_AT_LEAST_ONE = (
    "CONCORD_COLLECT_ATTEMPTS",
    "CONCORD_COLLECT_BATCH",
    "CONCORD_COLLECT_THREADS",
    "CONCORD_COLLECT_TASKS",
    "CONCORD_COLLECT_PER_HOST",
    "CONCORD_COLLECT_PROJECT_CONCURRENCY",
    "CONCORD_COLLECT_CLAIM_SECONDS",
)
_AT_LEAST_ZERO = ("CONCORD_COLLECT_MAX_REDIRECTS",)
_POSITIVE_SECONDS = (
    "CONCORD_COLLECT_CONNECT_TIMEOUT",
    "CONCORD_COLLECT_READ_TIMEOUT",
    "CONCORD_COLLECT_TOTAL_TIMEOUT",
)
_NOT_NEGATIVE = (
    "CONCORD_COLLECT_BACKOFF",
    "CONCORD_COLLECT_BACKOFF_CAP",
    "CONCORD_COLLECT_PER_HOST_RATE",
    "CONCORD_COLLECT_RUN_SECONDS",
)

E_CA_BUNDLE = "concord.E001"
E_CIDR = "concord.E002"
E_NUMBER = "concord.E003"


def collection_settings_problems() -> list[tuple[str, str]]:
    """What is wrong with the collection settings, as (check id, sentence) pairs; [] if
    nothing."""
    problems = []
    bundle = getattr(settings, "CONCORD_COLLECT_CA_BUNDLE", "")
    if bundle:
        if not os.path.isfile(bundle):
            problems.append((E_CA_BUNDLE, f"CONCORD_COLLECT_CA_BUNDLE: no file at {bundle}."))
        else:
            try:
                ssl.create_default_context().load_verify_locations(cafile=bundle)
            except (ssl.SSLError, OSError, ValueError) as exc:
                problems.append(
                    (
                        E_CA_BUNDLE,
                        f"CONCORD_COLLECT_CA_BUNDLE: {bundle} holds no PEM certificates"
                        f" that can be read ({exc}).",
                    )
                )
    for value in getattr(settings, "CONCORD_COLLECT_ALLOW_CIDRS", []):
        try:
            ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            problems.append(
                (
                    E_CIDR,
                    f"CONCORD_COLLECT_ALLOW_CIDRS: {value!r} is not a network"
                    " (write it as 10.0.0.0/8 or fd00::/8).",
                )
            )
    for name, low, kind in [
        *((name, 1, int) for name in _AT_LEAST_ONE),
        *((name, 0, int) for name in _AT_LEAST_ZERO),
        *((name, None, float) for name in _POSITIVE_SECONDS),
        *((name, 0, float) for name in _NOT_NEGATIVE),
    ]:
        value = getattr(settings, name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append((E_NUMBER, f"{name}: {value!r} is not a number."))
        elif kind is int and value != int(value):
            problems.append((E_NUMBER, f"{name}: {value!r} is not a whole number."))
        elif low is None and not value > 0:
            problems.append((E_NUMBER, f"{name}: {value!r} must be more than 0 seconds."))
        elif low is not None and value < low:
            problems.append((E_NUMBER, f"{name}: {value!r} must be at least {low}."))
    return problems


@checks.register("concord")
def collection_settings_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The collection settings, checked (``collection_settings_problems``)."""
    return [
        checks.Error(message, hint="Fix it in the environment (.env.example).", id=check_id)
        for check_id, message in collection_settings_problems()
    ]
