"""Account pages: members and invitations, accepting an invitation, API tokens, logging in
(throttled, with django-axes's lockout), a password reset page that says what it can do.
Thin: parse, call one service, render."""

import logging
from smtplib import SMTPException

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from datasets import access
from datasets.accounts import selectors, services
from datasets.accounts.forms import AcceptForm, InviteForm, MemberRoleForm, TokenForm
from datasets.api import is_api
from datasets.models import Invitation, Role
from datasets.projects import selectors as project_selectors
from datasets.projects import services as project_services

logger = logging.getLogger(__name__)

THROTTLED = "Too many attempts from your address: wait {seconds} seconds and try again."
MAIL_FAILED = "The invitations were created but could not be mailed: copy their links below."
NOT_LOCKED = "{username} was not locked out."
# Django's auth backends; named when logging someone in who did not type a password here.
MODEL_BACKEND = "datasets.access.UsernameBackend"


def _throttled(request: HttpRequest, template: str, context: dict) -> HttpResponse | None:
    """A 429 page when this address has used up its credential attempts, else None."""
    wait = access.credentials_wait(request)
    if wait is None:
        return None
    context = {**context, "throttled": THROTTLED.format(seconds=wait)}
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(wait)
    return response


# --- Logging in ------------------------------------------------------------------------------


@method_decorator(login_not_required, name="dispatch")
class LoginView(auth_views.LoginView):
    """Django's login page, throttled per address; django-axes locks a username out."""

    def post(self, request, *args, **kwargs):
        refused = _throttled(request, self.template_name, {"form": AuthenticationForm(request)})
        return refused or super().post(request, *args, **kwargs)


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """What django-axes answers when a username is locked out (its AXES_LOCKOUT_CALLABLE):
    JSON for the API, the login page saying so for people; 429 either way."""
    message = settings.AXES_COOLOFF_MESSAGE
    if is_api(request):
        return JsonResponse({"detail": message}, status=429)
    return render(
        request,
        "registration/login.html",
        {"form": AuthenticationForm(request), "locked": message},
        status=429,
    )


@login_not_required
@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """Django's password reset by mail, or, with no mail server, a page that says so plainly."""
    if not settings.CONCORD_MAIL_CONFIGURED:
        return render(request, "registration/password_reset_form.html", {"no_mail": True})
    if request.method == "POST":
        refused = _throttled(request, "registration/password_reset_form.html", {})
        if refused:
            return refused
    return auth_views.PasswordResetView.as_view()(request)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, where a wrong current password counts as a failed login of
    the username (django-axes): a stolen session cannot guess the password without limit. At
    the lockout the session is logged out, and the account waits like any locked one."""

    def form_invalid(self, form):
        if form.has_error("old_password", "password_incorrect"):
            user_login_failed.send(
                sender=__name__,
                credentials={"username": self.request.user.get_username()},
                request=self.request,
            )
            if getattr(self.request, "axes_locked_out", False):
                logout(self.request)
                return lockout_response(self.request)
        return super().form_invalid(form)


@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """The password change page: throttled per address, a wrong current password counts toward
    the username's lockout (PasswordChangeView); a locked account's session is logged out.
    A new password revokes API tokens (services.on_password_change)."""
    if request.method == "POST":
        refused = _throttled(request, "registration/password_change_form.html", {})
        if refused:
            return refused
        if selectors.locked_usernames(usernames=[request.user.get_username()]):
            logout(request)
            return lockout_response(request)
    return PasswordChangeView.as_view()(request)


# --- Members and invitations -----------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def project_members(request: HttpRequest, slug: str) -> HttpResponse:
    """Managers: members (role, remove, unlock), invitations (one or many, pending, revoke)."""
    project, _ = access.project_get(user=request.user, slug=slug, need=access.MANAGE)
    form = MemberRoleForm(request.POST or None, project=project)
    if request.method == "POST":
        if not form.is_valid():
            return _members_page(
                request, project, member_form=form, invite_form=InviteForm(), status=400
            )
        try:
            project_services.membership_set(
                project=project, user=form.cleaned_data["user"], role=form.cleaned_data["role"]
            )
        except project_services.MembershipError as exc:
            messages.error(request, str(exc))
        else:
            role = Role(form.cleaned_data["role"]).label.lower()
            messages.success(request, f"{form.cleaned_data['username']} is now {role}.")
        return redirect("project-members", slug=project.slug)
    return _members_page(request, project, member_form=form, invite_form=InviteForm())


def _members_page(request, project, *, member_form, invite_form, status: int = 200):
    members = list(project_selectors.project_members(project=project))
    # Administrators' lockouts are neither shown nor lifted here (services.member_unlock).
    locked = selectors.locked_usernames(
        usernames=[m.user.username for m in members if services.unlockable_by_manager(m.user)]
    )
    invitations = [
        (invitation, _invitation_link(request, invitation))
        for invitation in selectors.invitations_pending(project=project)
    ]
    return render(
        request,
        "datasets/members.html",
        {
            "project": project,
            "form": member_form,
            "invite_form": invite_form,
            "members": members,
            "locked": locked,
            "invitations": invitations,
            "roles": Role.choices,
            "mail_configured": settings.CONCORD_MAIL_CONFIGURED,
            "invitation_days": settings.CONCORD_INVITATION_DAYS,
        },
        status=status,
    )


def _invitation_link(request: HttpRequest, invitation: Invitation) -> str:
    token = services.invitation_token(invitation=invitation)
    return request.build_absolute_uri(reverse("invitation-accept", kwargs={"token": token}))


@require_POST
def invitations_create_request(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, need=access.MANAGE)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _members_page(
            request,
            project,
            member_form=MemberRoleForm(project=project),
            invite_form=form,
            status=400,
        )
    results = services.invitations_create(
        project=project,
        lines=form.cleaned_data["people"],
        role=form.cleaned_data["role"],
        created_by=request.user,
    )
    created = [result.invitation for result in results if result.invitation is not None]
    for result in results:
        if result.problem:
            messages.error(request, f"Line {result.line_number} ({result.text}): {result.problem}.")
        elif result.replaced:
            messages.info(request, f"{result.text}: the earlier invitation was replaced.")
    if created:
        mailed = 0
        try:
            mailed = services.invitations_mail(
                invitations=created, link_for=lambda i: _invitation_link(request, i)
            )
        except (SMTPException, OSError):
            logger.exception("mailing invitations of %s", project.slug)
            messages.warning(request, MAIL_FAILED)
        noun = "invitation" if len(created) == 1 else "invitations"
        sent = f", {mailed} mailed" if mailed else ""
        messages.success(
            request,
            f"{len(created)} {noun} created{sent}: copy the links under Pending invitations.",
        )
    return redirect("project-members", slug=project.slug)


@require_POST
def invitation_revoke_request(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, need=access.MANAGE)
    invitation = get_object_or_404(Invitation, pk=invitation_id, project=project)
    if services.invitation_revoke(invitation=invitation):
        messages.success(request, "Invitation withdrawn: its link no longer works.")
    else:
        messages.info(request, "That invitation was already used or withdrawn.")
    return redirect("project-members", slug=project.slug)


@require_POST
def member_unlock_request(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    """Managers unlock a member of their project that too many failed logins locked out (not an
    administrator: 403)."""
    project, _ = access.project_get(user=request.user, slug=slug, need=access.MANAGE)
    membership = get_object_or_404(project.memberships.select_related("user"), user_id=user_id)
    username = membership.user.username
    try:
        unlocked = services.member_unlock(project=project, user=membership.user)
    except services.UnlockRefused as refused:
        raise PermissionDenied(str(refused)) from refused
    if unlocked:
        messages.success(request, f"{username} can log in again.")
    else:
        messages.info(request, NOT_LOCKED.format(username=username))
    return redirect("project-members", slug=project.slug)


@login_not_required
@never_cache  # its form is for the invited person only (config.security covers signed-in pages)
@require_http_methods(["GET", "POST"])
def invitation_accept_page(request: HttpRequest, token: str) -> HttpResponse:
    """The invitation link: choose a username and password (or join as the signed-in user)."""
    try:
        invitation = services.invitation_from_token(token=token)
    except services.InvitationRefused as refused:
        status = 404 if str(refused) == services.INVITATION_INVALID else 410
        return render(request, "accounts/invitation.html", {"refused": str(refused)}, status=status)
    signed_in = request.user.is_authenticated
    form = None if signed_in else AcceptForm(request.POST or None, email=invitation.email)
    if request.method == "POST":
        refused = _throttled(
            request, "accounts/invitation.html", {"invitation": invitation, "form": form}
        )
        if refused:
            return refused
        if signed_in or form.is_valid():
            try:
                user = services.invitation_accept(
                    invitation=invitation,
                    user=request.user if signed_in else None,
                    username="" if signed_in else form.cleaned_data["username"],
                    password="" if signed_in else form.cleaned_data["password1"],
                )
            except services.InvitationRefused as gone:
                return render(
                    request, "accounts/invitation.html", {"refused": str(gone)}, status=410
                )
            except ValueError as refused:
                field = "username" if str(refused) == services.USERNAME_TAKEN else None
                form.add_error(field, str(refused))
            else:
                if not signed_in:
                    login(request, user, backend=MODEL_BACKEND)
                messages.success(request, f"Welcome to {invitation.project.name}.")
                if invitation.role == Role.MANAGER:
                    return redirect("project-detail", slug=invitation.project.slug)
                return redirect("annotate", slug=invitation.project.slug)
    return render(
        request,
        "accounts/invitation.html",
        {"invitation": invitation, "form": form},
        status=400 if form is not None and form.errors else 200,
    )


# --- API tokens ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def tokens_page(request: HttpRequest) -> HttpResponse:
    """The signed-in user's API tokens: create a named one (shown once), see use, revoke."""
    form = TokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        _token, created = services.token_create(
            user=request.user, name=form.cleaned_data["name"], days=form.cleaned_data["days"]
        )
        form = TokenForm()
    return render(
        request,
        "accounts/tokens.html",
        {"form": form, "created": created, "tokens": selectors.tokens_of(user=request.user)},
        status=400 if form.errors else 200,
    )


@require_POST
def token_revoke_request(request: HttpRequest, token_uid) -> HttpResponse:
    token = get_object_or_404(selectors.tokens_of(user=request.user), uid=token_uid)
    services.token_revoke(user=request.user, token=token)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("tokens")


@require_POST
def tokens_revoke_all_request(request: HttpRequest) -> HttpResponse:
    count = services.tokens_revoke_all(user=request.user)
    messages.success(request, f"{count} token{'s' if count != 1 else ''} revoked.")
    return redirect("tokens")
