"""Suspending an annotator: their judgments stop counting in a project; nothing is deleted.

The figures follow through a recompute requested like a judgment's (``recomputes``: coalesced,
run by a worker on the agreement queue), never run in the manager's request: on a large project
it takes minutes and would hold the page and, on SQLite, the write lock."""

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotate.agreement.services.recomputes import recompute_request
from annotate.models import Lease, LeaseState, Suspension
from annotate.queue.services.leases import lease_skip
from datasets.models import Project

ALREADY_SUSPENDED = "This annotator is already suspended."
NOT_SUSPENDED = "This annotator is not suspended."


class SuspensionRefused(Exception):
    pass


def annotator_suspend(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    by: AbstractBaseUser,
    reason: str = "",
    now: datetime | None = None,
) -> Suspension:
    """Take the annotator's judgments out of every figure of the project: the suspension is
    stored, their leases go back to the pool, and a full recompute is requested (it runs on a
    worker, with any recompute already waiting)."""
    now = now or timezone.now()
    with transaction.atomic():
        if Suspension.objects.filter(
            project=project, annotator=annotator, lifted_at__isnull=True
        ).exists():
            raise SuspensionRefused(ALREADY_SUSPENDED)
        suspension = Suspension.objects.create(
            project=project, annotator=annotator, suspended_by=by, suspended_at=now, reason=reason
        )
    # The items they hold go back to the pool; they get no new ones (annotate.queue).
    for lease in Lease.objects.filter(
        project=project, annotator=annotator, state=LeaseState.ACTIVE
    ):
        lease_skip(lease=lease)
    # Full: their votes weighed on every annotator's estimated reliability, so on every item's
    # confidence, not only on the items they judged.
    recompute_request(project_id=project.pk, delay=0, full=True)
    return suspension


def annotator_reinstate(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    by: AbstractBaseUser,
    now: datetime | None = None,
) -> Suspension:
    """Count the annotator's judgments again; the full recompute it requests restores the
    figures they gave."""
    now = now or timezone.now()
    with transaction.atomic():
        suspension = (
            Suspension.objects.select_for_update()
            .filter(project=project, annotator=annotator, lifted_at__isnull=True)
            .first()
        )
        if suspension is None:
            raise SuspensionRefused(NOT_SUSPENDED)
        suspension.lifted_at, suspension.lifted_by = now, by
        suspension.save(update_fields=["lifted_at", "lifted_by"])
    recompute_request(project_id=project.pk, delay=0, full=True)
    return suspension
