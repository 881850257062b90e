"""Manager pages that set a project up: create, settings, removing a member (the Members page
itself, with invitations, is datasets.accounts'). Thin: parse, call, render."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from datasets import access
from datasets.projects import services
from datasets.projects.forms import ProjectForm


@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    if not access.can_create_projects(request.user):
        raise PermissionDenied(access.CANNOT_CREATE_PROJECTS)
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.project_create(creator=request.user, **form.settings())
        messages.success(request, f"Project “{project.name}” created.")
        return redirect("project-detail", slug=project.slug)
    return render(request, "datasets/project_form.html", {"form": form, "creating": True})


@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    form = ProjectForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        services.project_update(project=project, **form.settings())
        messages.success(request, "Settings saved.")
        return redirect("project-detail", slug=project.slug)
    return render(
        request, "datasets/project_form.html", {"form": form, "project": project, "creating": False}
    )


@require_POST
def project_member_remove(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    membership = get_object_or_404(project.memberships.select_related("user"), user_id=user_id)
    try:
        services.membership_remove(project=project, user=membership.user)
    except services.MembershipError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.username} removed.")
    return redirect("project-members", slug=project.slug)
