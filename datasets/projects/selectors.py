"""Read-side queries of the project set-up pages."""

from django.db.models import QuerySet

from datasets.models import Membership, Project


def project_members(*, project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("role", "user__username")
