"""Suspending an annotator: their judgments stop counting in a project; nothing is deleted."""

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotate.agreement.services.consensus import RecomputeResult, consensus_recompute
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
) -> RecomputeResult:
    """Take the annotator's judgments out of every figure of the project and recompute them."""
    now = now or timezone.now()
    with transaction.atomic():
        if Suspension.objects.filter(
            project=project, annotator=annotator, lifted_at__isnull=True
        ).exists():
            raise SuspensionRefused(ALREADY_SUSPENDED)
        Suspension.objects.create(
            project=project, annotator=annotator, suspended_by=by, suspended_at=now, reason=reason
        )
    # The items they hold go back to the pool; they get no new ones (annotate.queue).
    for lease in Lease.objects.filter(
        project=project, annotator=annotator, state=LeaseState.ACTIVE
    ):
        lease_skip(lease=lease)
    return consensus_recompute(project=project, now=now)


def annotator_reinstate(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    by: AbstractBaseUser,
    now: datetime | None = None,
) -> RecomputeResult:
    """Count the annotator's judgments again; the recompute restores the figures they gave."""
    now = now or timezone.now()
    with transaction.atomic():
        lifted = Suspension.objects.filter(
            project=project, annotator=annotator, lifted_at__isnull=True
        ).update(lifted_at=now, lifted_by=by)
        if not lifted:
            raise SuspensionRefused(NOT_SUSPENDED)
    return consensus_recompute(project=project, now=now)
