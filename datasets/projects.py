"""Creating and configuring projects and their membership."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.text import slugify

from datasets.models import Membership, Project, Role

LAST_MANAGER = "A project needs at least one manager; make someone else a manager first."

# The fields a manager sets on a project; shared by the form, the API serializer and the service.
PROJECT_SETTINGS = (
    "name",
    "description",
    "guidelines",
    "captions_per_image",
    "judgments_per_item",
    "gold_rate",
    "challenge_rate",
    "agreement_threshold",
    "caption_min_words",
    "caption_max_words",
    "caption_banned_openings",
)


class MembershipError(ValueError):
    pass


@transaction.atomic
def project_create(*, creator: AbstractBaseUser, name: str, **settings: object) -> Project:
    """Create a project with a unique slug; its creator becomes its first manager."""
    project = Project.objects.create(
        name=name, slug=_unique_slug(name), created_by=creator, **settings
    )
    Membership.objects.create(project=project, user=creator, role=Role.MANAGER)
    return project


def project_update(*, project: Project, **changes: object) -> Project:
    for field, value in changes.items():
        if field not in PROJECT_SETTINGS:
            raise TypeError(f"{field} is not a project setting")
        setattr(project, field, value)
    project.save(update_fields=[*changes, "updated_at"])
    return project


@transaction.atomic
def membership_set(*, project: Project, user: AbstractBaseUser, role: str) -> Membership:
    """Add the user to the project with this role, or change their role."""
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        return Membership.objects.create(project=project, user=user, role=role)
    if membership.role == Role.MANAGER and role != Role.MANAGER:
        _ensure_another_manager(project=project, user=user)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user: AbstractBaseUser) -> None:
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        return
    if membership.role == Role.MANAGER:
        _ensure_another_manager(project=project, user=user)
    membership.delete()


def _ensure_another_manager(*, project: Project, user: AbstractBaseUser) -> None:
    others = Membership.objects.filter(project=project, role=Role.MANAGER).exclude(user=user)
    if not others.exists():
        raise MembershipError(LAST_MANAGER)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:70] or "project"
    slug, counter = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, counter = f"{base}-{counter}", counter + 1
    return slug
