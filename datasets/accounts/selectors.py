"""Read-side queries of the account pages: pending invitations, a user's tokens, lockouts."""

from collections.abc import Iterable
from datetime import datetime

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet, Sum
from django.utils import timezone

from datasets.access import username_key
from datasets.models import ApiToken, Invitation, Project


def invitations_pending(*, project: Project, now: datetime | None = None) -> QuerySet[Invitation]:
    """Invitations of the project that can still be used, newest first."""
    return Invitation.objects.filter(
        project=project,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=now or timezone.now(),
    ).select_related("created_by")


def tokens_of(*, user: AbstractBaseUser, now: datetime | None = None) -> QuerySet[ApiToken]:
    """The user's API tokens that still work (expired ones are left out), newest first."""
    return ApiToken.objects.filter(user=user).exclude(expiry__lte=now or timezone.now())


def locked_usernames(*, usernames: Iterable[str], now: datetime | None = None) -> set[str]:
    """Which of these usernames django-axes locks out now (failures within the cool-off)."""
    # Attempts are counted by the username's key (datasets.access.lockout_username).
    by_key = {username: username_key(username) for username in usernames}
    if not by_key:
        return set()
    attempts = AccessAttempt.objects.filter(username__in=set(by_key.values()))
    if settings.AXES_COOLOFF_TIME:
        attempts = attempts.filter(
            attempt_time__gte=(now or timezone.now()) - settings.AXES_COOLOFF_TIME
        )
    failures = attempts.values("username").annotate(total=Sum("failures_since_start"))
    locked = {row["username"] for row in failures if row["total"] >= settings.AXES_FAILURE_LIMIT}
    return {username for username, key in by_key.items() if key in locked}
