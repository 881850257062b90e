"""Database helpers every stage may use."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection, transaction

T = TypeVar("T")

# PostgreSQL's SQLSTATEs for "this transaction lost a lock race; run it again": deadlock_detected
# and serialization_failure. Both abort only the transaction that got them, which is then safe
# to repeat from the start (PostgreSQL manual, "Serialization Failure Handling").
_RETRYABLE = {"40P01", "40001"}


def atomic_retried(work: Callable[[], T], *, attempts: int = 4) -> T:
    """Run ``work()`` in its own transaction, again (up to ``attempts`` times in all, after a
    short random wait) when PostgreSQL aborts it as a deadlock or serialization failure.

    Two writers that lock the same rows in different orders (a bulk action and a recompute
    writing item labels) deadlock now and then under load; PostgreSQL picks one to abort, and
    repeating it is the documented remedy. Inside an outer transaction a repeat is impossible
    (the outer one is aborted too), so there ``work`` runs once in a savepoint and the error goes
    up. Raises what ``work`` raises, and the last OperationalError after ``attempts``.
    """
    for attempt in range(1, attempts + 1):
        outer = connection.in_atomic_block
        try:
            with transaction.atomic():
                return work()
        except OperationalError as exc:
            if outer or attempt == attempts or _sqlstate(exc) not in _RETRYABLE:
                raise
            logging.getLogger(__name__).warning(
                "Transaction aborted by PostgreSQL (%s), try %d of %d", exc, attempt, attempts
            )
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    raise AssertionError("unreachable")


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
