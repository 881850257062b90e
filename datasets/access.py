"""Who may see and change what: one place for the rules that views and the API both apply.

Non-members get "not found" rather than "forbidden", so guessing slugs or ids reveals nothing.
Staff users are administrators and act as managers of every project.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404

from datasets.models import Membership, Project, Role

NOT_A_MANAGER = "Only the project's managers can do this."
CANNOT_CREATE_PROJECTS = "Your account cannot create projects; ask an administrator."


def can_create_projects(user: AbstractBaseUser) -> bool:
    return user.is_staff or user.has_perm("datasets.add_project")


def projects_visible(*, user: AbstractBaseUser) -> QuerySet[Project]:
    if user.is_staff:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def project_role(*, user: AbstractBaseUser, project: Project) -> str | None:
    """The user's role in the project: manager, annotator, or None for outsiders."""
    if user.is_staff:
        return Role.MANAGER
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )


def project_get(*, user: AbstractBaseUser, slug: str, manager: bool = False) -> tuple[Project, str]:
    """The project and the user's role in it; Http404 for outsiders, PermissionDenied for annotators
    when a manager is required."""
    # One query: the project with the user's role beside it (every page and API call starts here).
    projects = Project.objects.filter(slug=slug).order_by()
    if not user.is_staff:
        roles = Membership.objects.filter(project=OuterRef("pk"), user=user).order_by()
        projects = projects.annotate(member_role=Subquery(roles.values("role")[:1]))
    project = projects.first()
    role = None
    if project is not None:
        role = Role.MANAGER if user.is_staff else project.member_role
    if role is None:
        raise Http404("No such project.")
    if manager and role != Role.MANAGER:
        raise PermissionDenied(NOT_A_MANAGER)
    return project, role
