"""Accounts: invitations into a project, API tokens, unlocking, tokens revoked with a password.

Built on Django's own machinery: invitation links are ``django.core.signing`` signatures of the
invitation's id (keyed by SECRET_KEY, nothing secret stored), passwords go through Django's
validators and hashers, tokens are django-rest-knox's (a SHA-512 digest stored, the token shown
once), lockouts are django-axes's.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.signals import user_locked_out
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from datasets.access import username_key
from datasets.models import ApiToken, Invitation, Membership, Project, Role
from datasets.projects.services import membership_set

logger = logging.getLogger(__name__)

INVITATION_SALT = "concord.invitation"
MAX_INVITATIONS_AT_ONCE = 500
NOTE_MAX = Invitation._meta.get_field("note").max_length
TOKEN_NAME_MAX = ApiToken._meta.get_field("name").max_length
TOKEN_LIFETIMES_DAYS = (7, 30, 90, 365)

INVITATION_INVALID = "This invitation link is not valid. Check that it was copied whole."
INVITATION_ACCEPTED = "This invitation has already been used. Log in, or ask for a new one."
INVITATION_REVOKED = "This invitation was withdrawn. Ask the project's manager for a new one."
INVITATION_EXPIRED = "This invitation has expired. Ask the project's manager for a new one."
USERNAME_TAKEN = "That username is taken; choose another."
EMAIL_HAS_ACCOUNT = (
    "An account with the address {email} already exists: log in with it, then open this link "
    "again to join with that account."
)
LINE_TOO_LONG = "longer than {limit} characters"
LINE_BAD_EMAIL = "not a valid email address"
LINE_REPEATED = "repeated above"
UNLOCK_NOT_A_MEMBER = "Only members of this project can be unlocked from it."
UNLOCK_ADMINISTRATOR = "An administrator's account is unlocked by an administrator, in the admin."
TOO_MANY_LINES = f"At most {MAX_INVITATIONS_AT_ONCE} invitations at once."


class InvitationRefused(Exception):
    """The invitation cannot be used (invalid, accepted, revoked, expired); str() says why."""


# --- Invitations ---------------------------------------------------------------------------


def invitation_token(*, invitation: Invitation) -> str:
    """The signed value in an invitation's link (URL-safe); only this server can make one."""
    return signing.dumps(invitation.pk, salt=INVITATION_SALT, compress=False)


def invitation_from_token(*, token: str, now: datetime | None = None) -> Invitation:
    """The pending invitation a link names. Raises InvitationRefused saying why it cannot be used."""
    try:
        invitation_id = signing.loads(token, salt=INVITATION_SALT)
    except signing.BadSignature as exc:
        raise InvitationRefused(INVITATION_INVALID) from exc
    invitation = (
        Invitation.objects.select_related("project").filter(pk=invitation_id).first()
        if isinstance(invitation_id, int)
        else None
    )
    if invitation is None:
        raise InvitationRefused(INVITATION_INVALID)
    _ensure_pending(invitation, now=now or timezone.now())
    return invitation


def _ensure_pending(invitation: Invitation, *, now: datetime) -> None:
    if invitation.accepted_at is not None:
        raise InvitationRefused(INVITATION_ACCEPTED)
    if invitation.revoked_at is not None:
        raise InvitationRefused(INVITATION_REVOKED)
    if invitation.expires_at <= now:
        raise InvitationRefused(INVITATION_EXPIRED)


@dataclass(frozen=True)
class InvitationLine:
    """One line of an invitation list and its one outcome: an invitation, or why not."""

    line_number: int
    text: str
    invitation: Invitation | None
    problem: str = ""
    replaced: bool = False


def invitation_lines(*, text: str) -> list[tuple[int, str]]:
    """The non-blank lines of an invitation list with their line numbers (1-based), stripped."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


@transaction.atomic
def invitations_create(
    *,
    project: Project,
    lines: Iterable[tuple[int, str]],
    role: str,
    created_by: AbstractBaseUser,
    now: datetime | None = None,
) -> list[InvitationLine]:
    """One invitation per line (an email address, or a name to recognise the link by).

    Every line gets one outcome: an invitation, or a problem (too long, an invalid address,
    a repeat of an earlier line); refused lines do not stop the others. An open invitation to
    the same address in this project is revoked and replaced, so the newest link is the one
    that works.
    """
    now = now or timezone.now()
    expires_at = now + timedelta(days=settings.CONCORD_INVITATION_DAYS)
    results, seen = [], set()
    for number, text in lines:
        key = text.casefold()
        if key in seen:
            results.append(InvitationLine(number, text, None, LINE_REPEATED))
            continue
        seen.add(key)
        email, note = "", text
        if "@" in text:
            try:
                validate_email(text)
            except ValidationError:
                results.append(InvitationLine(number, text, None, LINE_BAD_EMAIL))
                continue
            email, note = text, ""
        if len(text) > NOTE_MAX:
            results.append(InvitationLine(number, text, None, LINE_TOO_LONG.format(limit=NOTE_MAX)))
            continue
        replaced = bool(
            email
            and Invitation.objects.filter(
                project=project,
                email__iexact=email,
                accepted_at__isnull=True,
                revoked_at__isnull=True,
            ).update(revoked_at=now)
        )
        invitation = Invitation.objects.create(
            project=project,
            role=role,
            email=email,
            note=note,
            created_by=created_by,
            expires_at=expires_at,
        )
        results.append(InvitationLine(number, text, invitation, replaced=replaced))
    return results


def invitations_mail(*, invitations: Iterable[Invitation], link_for) -> int:
    """Mail each invitation that has an address its link, when mail is configured.

    ``link_for(invitation) -> str`` gives the absolute link. Returns how many were sent; a mail
    server failure is left to the caller (the links are shown to copy either way).
    """
    if not settings.CONCORD_MAIL_CONFIGURED:
        return 0
    sent = 0
    for invitation in invitations:
        if not invitation.email:
            continue
        sent += send_mail(
            subject=f"You are invited to {invitation.project.name} on Concord",
            message=(
                f"You are invited to join “{invitation.project.name}” as "
                f"{Role(invitation.role).label.lower()}.\n\nChoose a username and password "
                f"here (the link works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):"
                f"\n\n{link_for(invitation)}\n"
            ),
            from_email=None,
            recipient_list=[invitation.email],
        )
    return sent


def invitation_revoke(*, invitation: Invitation, now: datetime | None = None) -> bool:
    """Withdraw a pending invitation; False when it was already accepted or revoked."""
    return bool(
        Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now or timezone.now())
    )


@transaction.atomic
def invitation_accept(
    *,
    invitation: Invitation,
    user: AbstractBaseUser | None = None,
    username: str = "",
    password: str = "",
    now: datetime | None = None,
) -> AbstractBaseUser:
    """Use an invitation: join its project with its role, as ``user`` or as a new account.

    With no ``user``, an account is created with ``username`` and ``password`` (already checked
    by the form against Django's validators) and the invitation's address. A member who is
    already a manager stays one. Raises InvitationRefused when the invitation was used, revoked
    or expired meanwhile, ValueError(USERNAME_TAKEN) when the username went to someone else,
    ValueError(EMAIL_HAS_ACCOUNT) when an account already has the invitation's address.
    """
    now = now or timezone.now()
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    _ensure_pending(invitation, now=now)
    if user is None:
        # One account per address: a person invited twice (by two projects, or again after a
        # first invitation) joins with the account they made, not with a second one.
        if invitation.email and (
            get_user_model().objects.filter(email__iexact=invitation.email).exists()
        ):
            raise ValueError(EMAIL_HAS_ACCOUNT.format(email=invitation.email))
        try:
            with transaction.atomic():
                user = get_user_model().objects.create_user(
                    username=username, password=password, email=invitation.email
                )
        except IntegrityError as exc:
            raise ValueError(USERNAME_TAKEN) from exc
    current = Membership.objects.filter(project=invitation.project, user=user).first()
    if current is None or (current.role != Role.MANAGER and invitation.role == Role.MANAGER):
        membership_set(project=invitation.project, user=user, role=invitation.role)
    invitation.accepted_at = now
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return user


# --- API tokens ----------------------------------------------------------------------------


def token_create(
    *, user: AbstractBaseUser, name: str, days: int | None = None
) -> tuple[ApiToken, str]:
    """A new named token for the user, expiring after ``days`` (default CONCORD_TOKEN_DAYS).

    Returns the row and the token itself, which is shown once: only its digest is stored.
    """
    days = days or settings.CONCORD_TOKEN_DAYS
    ApiToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    return ApiToken.objects.create(user=user, expiry=timedelta(days=days), name=name)


def token_revoke(*, user: AbstractBaseUser, token: ApiToken) -> bool:
    """Delete one of the user's tokens; False when it was already gone (or not theirs)."""
    deleted, _ = ApiToken.objects.filter(pk=token.pk, user=user).delete()
    return bool(deleted)


def tokens_revoke_all(*, user: AbstractBaseUser) -> int:
    """Delete every token of the user (on a password change, or at their request)."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


# --- Lockouts ------------------------------------------------------------------------------


class UnlockRefused(Exception):
    """A manager may not unlock this account; str() says why."""


def account_unlock(*, username: str) -> int:
    """Forget the failed attempts that lock this username out (django-axes); returns how many.

    For administrators (the admin, a shell); a project's manager goes through
    :func:`member_unlock`, which keeps their power inside their project.
    """
    # Attempts are counted by the username's key (datasets.access.lockout_username).
    return axes_reset(username=username_key(username))


def unlockable_by_manager(user: AbstractBaseUser) -> bool:
    """Whether a project's manager may unlock this member: anyone but administrators (staff or
    superusers), whose lockout only an administrator lifts: a manager who could unlock an
    administrator's account could help a guesser at the most powerful password of the site."""
    return not (user.is_staff or user.is_superuser)


def member_unlock(*, project: Project, user: AbstractBaseUser) -> int:
    """A manager unlocks a member of their project (see :func:`account_unlock`).

    Raises UnlockRefused for someone who is not a member of ``project`` or is an administrator.
    """
    if not Membership.objects.filter(project=project, user=user).exists():
        raise UnlockRefused(UNLOCK_NOT_A_MEMBER)
    if not unlockable_by_manager(user):
        raise UnlockRefused(UNLOCK_ADMINISTRATOR)
    return account_unlock(username=user.get_username())


def on_password_change(sender, instance, created: bool, **kwargs) -> None:
    """post_save receiver of the user model: a new password revokes every token of its user and
    lifts the lockout of their username (the person who just proved who they are by a reset
    link, or chose a new password, is not the guesser the lockout stops).

    set_password() leaves the new raw password in ``_password`` until the save completes (Django
    calls its password validators' password_changed() from it); a hash upgrade at login does
    not, so only a real change counts. Any path counts: the password change and reset pages,
    the admin, `changepassword`, the shell.
    """
    if not created and getattr(instance, "_password", None) is not None:
        tokens_revoke_all(user=instance)
        account_unlock(username=instance.get_username())


def log_lockout(sender, request, username: str, ip_address: str, **kwargs) -> None:
    """django-axes's user_locked_out receiver: one WARNING when a username becomes locked (its
    failures reach the limit), none for the attempts refused while it stays locked (which axes
    signals too). The username is left out, as axes leaves it out of its own records (someone
    may have typed a password into the username field); the admin's Access attempts has it."""
    if getattr(request, "axes_failures_since_start", None) == settings.AXES_FAILURE_LIMIT:
        logger.warning(
            "A username was locked out after %d failed attempts (last from %s on %s); the "
            "admin's Access attempts lists it.",
            settings.AXES_FAILURE_LIMIT,
            ip_address,
            getattr(request, "path", "?"),
        )


def receivers_connect() -> None:
    """Connect this stage's receivers (DatasetsConfig.ready)."""
    user_locked_out.connect(log_lockout, dispatch_uid="concord-log-lockout")
    post_save.connect(
        on_password_change,
        sender=get_user_model(),
        dispatch_uid="concord-revoke-tokens-on-password-change",
    )
