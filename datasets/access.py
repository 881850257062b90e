"""Who may see and change what: the one access check that every page and API view applies.

A project is reached with a *need*:

* ``READ``: any member (an annotator whose work is suspended still sees their screen);
* ``WORK``: annotation writes (take, submit, skip, undo, heartbeat): a member whose work in the
  project is not suspended;
* ``MANAGE``: the project's managers.

Non-members get "not found" rather than "forbidden", so guessing slugs or ids reveals nothing;
a member lacking the need gets "forbidden" with the reason. Staff users are administrators and
act as managers of every project. Removing a member deletes their membership, so every path
answers them "not found" at once; suspending one (annotate.agreement) closes every WORK path.

Pages call :func:`project_get`; API views get the same check from :class:`ProjectAccess`, the
default DRF permission class, and read its result with :func:`api_project`. API clients
authenticate with a django-rest-knox token (:class:`ApiTokenAuthentication`), which the stored
image files accept too (:func:`request_user`).
"""

import ipaddress
import unicodedata
from datetime import timedelta
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest
from django.utils import timezone
from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from annotate.models import Lease, Suspension
from datasets.models import ApiToken, Image, Membership, Project, Role

READ = "read"
WORK = "work"
MANAGE = "manage"
NEEDS = (READ, WORK, MANAGE)

NOT_A_MANAGER = "Only the project's managers can do this."
WORK_SUSPENDED = (
    "Your work in this project is paused by its managers: you cannot take, answer or skip tasks."
)
CANNOT_CREATE_PROJECTS = "Your account cannot create projects; ask an administrator."
NO_SUCH_PROJECT = "No such project."
# A token's last use is written at most this often, so a busy client costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def can_create_projects(user: AbstractBaseUser) -> bool:
    return user.is_staff or user.has_perm("datasets.add_project")


def projects_visible(*, user: AbstractBaseUser) -> QuerySet[Project]:
    if user.is_staff:
        return Project.objects.all()
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user)


def project_role(*, user: AbstractBaseUser, project: Project) -> str | None:
    """The user's role in the project: manager, annotator, or None for outsiders."""
    if user.is_staff:
        return Role.MANAGER
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )


def project_get(
    *, user: AbstractBaseUser, slug: str, manager: bool = False, need: str = READ
) -> tuple[Project, str]:
    """The project with this slug and the user's role in it, if the user has the need.

    ``manager=True`` is ``need=MANAGE``. Raises Http404 for outsiders (and anonymous users),
    PermissionDenied (with the reason) for a member without the need.
    """
    return project_access(user=user, need=MANAGE if manager else need, slug=slug)


def project_access(*, user: AbstractBaseUser, need: str, **lookup: Any) -> tuple[Project, str]:
    """The one check: the project matching ``lookup`` (e.g. ``slug=…``), the user's role in it.

    One query: the project, the user's role and (for WORK) whether their work is suspended.
    Raises Http404 when there is no such project or the user is not a member, PermissionDenied
    when the member lacks ``need`` (one of READ, WORK, MANAGE).
    """
    if need not in NEEDS:
        raise ValueError(f"need must be one of {NEEDS}, not {need!r}")
    if user is None or not user.is_authenticated:
        raise Http404(NO_SUCH_PROJECT)
    projects = Project.objects.filter(**lookup).order_by()
    if not user.is_staff:
        roles = Membership.objects.filter(project=OuterRef("pk"), user=user).order_by()
        projects = projects.annotate(member_role=Subquery(roles.values("role")[:1]))
    if need == WORK:
        projects = projects.annotate(
            work_suspended=Exists(
                Suspension.objects.filter(
                    project=OuterRef("pk"), annotator=user, lifted_at__isnull=True
                )
            )
        )
    project = projects.first()
    role = None
    if project is not None:
        role = Role.MANAGER if user.is_staff else project.member_role
    if role is None:
        raise Http404(NO_SUCH_PROJECT)
    if need == MANAGE and role != Role.MANAGER:
        raise PermissionDenied(NOT_A_MANAGER)
    if need == WORK and project.work_suspended:
        raise PermissionDenied(WORK_SUSPENDED)
    return project, role


def images_visible(*, user: AbstractBaseUser, project: Project, role: str) -> QuerySet[Image]:
    """The project's images a member may fetch (file and thumbnail), by the role that
    :func:`project_access` returned: every image for a manager (and staff); for an annotator
    only the images of tasks they were handed (a lease, held now or before), which is all their
    screens show. Ids of other images are not theirs to enumerate."""
    images = Image.objects.filter(project=project)
    if role == Role.MANAGER:
        return images
    handed = Lease.objects.filter(annotator=user, task__image=OuterRef("pk"))
    return images.filter(Exists(handed))


class ProjectAccess(BasePermission):
    """DRF: a signed-in user, and for a view of one project the check of :func:`project_access`.

    The project comes from the URL's ``slug``, or from the view's ``access_lookup(request)``
    (the lookup of a project for views addressed by another id, e.g. a lease). The need is the
    view's ``project_need``: one need, or a dict by HTTP method; by default READ for safe methods
    and WORK otherwise. A view with other URL arguments and neither a slug nor a lookup must say
    ``project_scoped = False`` (it touches no project), or the request fails: nothing that names
    an object is left unchecked by accident. The result is kept for :func:`api_project`.
    """

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        lookup = _lookup(request, view)
        if lookup is None:
            return True
        need = _need(view, request.method)
        request.project_access = project_access(user=request.user, need=need, **lookup)
        return True


def _lookup(request, view) -> dict | None:
    kwargs = getattr(view, "kwargs", {}) or {}
    if hasattr(view, "access_lookup"):
        return view.access_lookup(request)
    if "slug" in kwargs:
        return {"slug": kwargs["slug"]}
    if kwargs and getattr(view, "project_scoped", True):
        raise ImproperlyConfigured(
            f"{type(view).__name__} takes {sorted(kwargs)} but neither a project slug nor "
            "access_lookup(); say project_scoped = False if it touches no project."
        )
    return None


def _need(view, method: str) -> str:
    need = getattr(view, "project_need", None)
    if isinstance(need, dict):
        need = need.get(method)
    if need is None:
        need = READ if method in SAFE_METHODS else WORK
    return need


def api_project(request) -> tuple[Project, str]:
    """The (project, role) that :class:`ProjectAccess` checked for this API request."""
    checked = getattr(request, "project_access", None)
    if checked is None:
        raise ImproperlyConfigured("api_project() needs ProjectAccess among the view's permissions")
    return checked


class ApiTokenAuthentication(TokenAuthentication):
    """django-rest-knox tokens (``Authorization: Token …``), noting each token's last use."""

    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("ascii")
        except UnicodeDecodeError as exc:  # knox would fail on it with a 500
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        user, auth_token = super().authenticate_credentials(token)
        now = timezone.now()
        if auth_token.last_used_at is None or now - auth_token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=auth_token.pk).update(last_used_at=now)
            auth_token.last_used_at = now
        return user, auth_token

    def _cleanup_token(self, auth_token) -> bool:
        # knox reads every token of the user on every request to delete expired ones; only the
        # one presented matters here (token creation clears the user's expired ones).
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


def request_user(request: HttpRequest) -> AbstractBaseUser:
    """The user of a plain Django view that API clients call too (the stored image files).

    The session's user if signed in, else the owner of a valid API token in the Authorization
    header, else AnonymousUser. Raises rest_framework's AuthenticationFailed for a token that is
    wrong, expired or revoked.
    """
    if request.user.is_authenticated:
        return request.user
    result = ApiTokenAuthentication().authenticate(request)
    return result[0] if result else AnonymousUser()


def client_address(request: HttpRequest) -> str:
    """The address a request came from, as every throttle and django-axes count it.

    ``REMOTE_ADDR`` (the peer of this server) unless CONCORD_PROXY_COUNT says that many reverse
    proxies stand in front, each appending the address it got the request from to
    ``X-Forwarded-For``: then the entry that many places from the end, the one the outermost
    proxy wrote. Entries further left came from the client and are never trusted, so rotating
    the header changes nothing. An entry that is not an IP address gives ``REMOTE_ADDR``.
    Works on a Django and a DRF request (both have ``META``).
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = settings.CONCORD_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",")]
    if len(hops) < proxies:
        # Fewer entries than proxies: a proxy did not write its own; trust none of them.
        return remote
    try:
        return str(ipaddress.ip_address(hops[-proxies]))
    except ValueError:
        return remote


class AddressThrottleMixin:
    """DRF throttles keyed by :func:`client_address` rather than DRF's own reading of
    X-Forwarded-For (which trusts the whole header unless NUM_PROXIES is set)."""

    def get_ident(self, request) -> str:
        return client_address(request)


class AnonThrottle(AddressThrottleMixin, AnonRateThrottle):
    """Anonymous API requests per client address (the ``anon`` rate)."""


class UserThrottle(AddressThrottleMixin, UserRateThrottle):
    """API requests per signed-in user, and per address for anonymous ones (the ``user`` rate)."""


class CredentialsThrottle(AddressThrottleMixin, SimpleRateThrottle):
    """Attempts at a credential (a password, an invitation) per client address: the login page,
    token creation, password change and reset, invitation acceptance. The rate is the
    ``credentials`` throttle rate (CONCORD_THROTTLE_CREDENTIALS); django-axes locks usernames."""

    scope = "credentials"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def credentials_wait(request: HttpRequest) -> int | None:
    """For a plain Django view: None when this address may try a credential now, else the
    seconds to wait (the attempt is counted when allowed)."""
    throttle = CredentialsThrottle()
    if throttle.allow_request(request, None):
        return None
    return max(1, int(throttle.wait() or 1))


class LockoutBackend(AxesStandaloneBackend):
    """django-axes's lockout for every authentication that comes with a request (the login
    pages, the token endpoint); one without (a shell, a management command, a test checking a
    password) is nobody guessing over the network, and is left to the next backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


# --- Usernames: one person, one name, whatever its case (QA finding 15) -------------------------


def username_key(username: str) -> str:
    """The form of a username that logins, lockouts and uniqueness compare: NFKC (full-width
    and compatibility characters as their plain forms) and case-folded ("Alice", "ALICE" and
    "alice" are one name; "Straße" is "strasse")."""
    return unicodedata.normalize("NFKC", username or "").casefold()


def users_named(username: str) -> list[AbstractBaseUser]:
    """The accounts whose username has this one's key (normally one, or none; two only where
    case variants were made before keys were compared). Scans the usernames in Python: the
    database's case-insensitive match (SQLite's is ASCII only) cannot be trusted with a key."""
    key = username_key(username)
    User = get_user_model()
    exact = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
    if exact is not None:
        return [exact]
    ids = [
        pk
        for pk, name in User._default_manager.values_list("pk", User.USERNAME_FIELD).iterator()
        if username_key(name) == key
    ]
    return list(User._default_manager.filter(pk__in=ids))


class UsernameBackend(ModelBackend):
    """Django's ModelBackend, finding the account by the username's key: a person logs in as
    "Alice" or "alice" alike. An exact match comes first; a key that two accounts share (case
    variants from before) logs in neither by a variant."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        User = get_user_model()
        if username is None:
            username = kwargs.get(User.USERNAME_FIELD)
        if username is None or password is None:
            return None
        matches = users_named(unicodedata.normalize("NFKC", str(username)))
        if len(matches) != 1:
            # As ModelBackend does: the hasher runs anyway, so the time does not tell.
            User().set_password(password)
            return None
        user = matches[0]
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None


def lockout_username(request, credentials: dict | None = None) -> str | None:
    """django-axes's AXES_USERNAME_CALLABLE: the key of the username tried (username_key), so
    that "Alice", "ALICE" and "alice" share one count of failures and one lockout."""
    field = settings.AXES_USERNAME_FORM_FIELD
    if credentials:
        username = credentials.get(field)
    else:
        data = getattr(request, "data", None) or getattr(request, "POST", {})
        username = data.get(field) if hasattr(data, "get") else None
    return username_key(str(username)) if username is not None else None
