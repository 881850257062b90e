"""Logging filters: one line where something happened, not one per refused attempt.

A guesser's every wrong password and every refused attempt while locked out would otherwise log
a WARNING (django-axes logs each failure, and repeats "Locking out" for each attempt while
locked; Django logs every 429). The attempts are in the admin (Access attempts); the log keeps
one WARNING when a username becomes locked (``datasets.accounts.services``) and real errors.
"""

import logging

# django-axes's per-attempt records, and its complaint about an authenticate() call without a
# request (a shell, a management command: nobody guessing over the network; the lockout
# backend leaves those to the next backend).
AXES_PER_ATTEMPT = (
    "AXES: New login failure by",
    "AXES: Repeated login failure by",
    "AXES: Locking out",
    "AXES: AxesDatabaseHandler.user_login_failed does not function without a request",
    "AXES: AxesProxyHandler.update_request can not set request attributes to a None request",
)
# Pages and endpoints where a 4xx is a refused credential (a wrong password is a 400 on the
# token endpoint): each attempt is in Access attempts, and throttled.
CREDENTIAL_URL_NAMES = frozenset(
    {"login", "api-token", "password_change", "password_reset", "invitation-accept"}
)


class AxesPerAttemptFilter(logging.Filter):
    """Drops django-axes's records of each failed attempt (see AXES_PER_ATTEMPT)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(AXES_PER_ATTEMPT)


class RefusedAttemptsFilter(logging.Filter):
    """Drops django.request's record of each 429 (a throttled or locked-out attempt) and of
    each 4xx of a credential endpoint (CREDENTIAL_URL_NAMES); other client errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status == 429:
            return False
        match = getattr(getattr(record, "request", None), "resolver_match", None)
        url_name = getattr(match, "url_name", None)
        return not (status is not None and 400 <= status < 500 and url_name in CREDENTIAL_URL_NAMES)
