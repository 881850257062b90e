"""Read-side figures for the annotator's screen and the manager's project page."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, IntegerField, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotate.models import Judgment, Lease, LeaseState, Task
from datasets.models import Image, Membership, Project, Role


@dataclass(frozen=True)
class AnnotatorProgress:
    done_by_you: int
    done_today: int
    open_tasks: int
    held_by_others: int
    next_release: datetime | None  # when the earliest lease held by someone else ends


@dataclass(frozen=True)
class ProjectProgress:
    tasks: int
    complete: int
    judgments: int
    gold: int


def annotator_progress(*, project: Project, annotator: AbstractBaseUser) -> AnnotatorProgress:
    now = timezone.now()
    mine = Judgment.objects.filter(task__project=project, annotator=annotator).aggregate(
        total=Count("id"),
        today=Count("id", filter=Q(created_at__gte=now.replace(hour=0, minute=0, second=0))),
    )
    others = Lease.objects.filter(
        project=project, state=LeaseState.ACTIVE, holds_slot=True
    ).exclude(annotator=annotator)
    held = others.aggregate(n=Count("id"), soonest=Min("expires_at"))
    return AnnotatorProgress(
        done_by_you=mine["total"],
        done_today=mine["today"],
        open_tasks=Task.objects.filter(project=project, is_gold=False, is_open=True).count(),
        held_by_others=held["n"],
        next_release=held["soonest"],
    )


def project_progress(*, project: Project) -> ProjectProgress:
    figures = Task.objects.filter(project=project).aggregate(
        tasks=Count("id", filter=Q(is_gold=False)),
        complete=Count("id", filter=Q(is_gold=False, judgment_count__gte=F("target"))),
        judgments=Sum("judgment_count"),
        gold=Count("id", filter=Q(is_gold=True)),
    )
    return ProjectProgress(
        tasks=figures["tasks"],
        complete=figures["complete"],
        judgments=figures["judgments"] or 0,
        gold=figures["gold"],
    )


def undo_deadline(*, project: Project, annotator: AbstractBaseUser) -> datetime | None:
    """Until when the annotator's last answer can still be undone, if it still can."""
    last = (
        Judgment.objects.filter(task__project=project, annotator=annotator)
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    if last is None:
        return None
    deadline = last + timedelta(seconds=settings.CONCORD_UNDO_SECONDS)
    return deadline if deadline > timezone.now() else None


@dataclass(frozen=True)
class ProjectCard:
    """One project as the home page lists it, for one user."""

    project: Project
    role: str  # manager or annotator (staff who are not members see it as managers)
    images: int
    tasks: int
    complete: int
    open_for_you: int  # open tasks (the annotator's stream may still skip ones they had)

    @property
    def percent_done(self) -> int:
        return round(100 * self.complete / self.tasks) if self.tasks else 0


def project_cards(*, projects: QuerySet[Project], user: AbstractBaseUser) -> list[ProjectCard]:
    """The given projects with their image and task counts, progress and the user's role, in a
    fixed number of queries whatever the number of projects (three)."""

    def count(queryset) -> Subquery:
        return Coalesce(Subquery(queryset.values("n")[:1], output_field=IntegerField()), 0)

    images = Image.objects.filter(project=OuterRef("pk")).order_by().values("project")
    tasks = Task.objects.filter(project=OuterRef("pk"), is_gold=False).order_by().values("project")
    rows = list(
        projects.annotate(
            n_images=count(images.annotate(n=Count("pk"))),
            n_tasks=count(tasks.annotate(n=Count("pk"))),
            n_complete=count(tasks.filter(judgment_count__gte=F("target")).annotate(n=Count("pk"))),
            n_open=count(tasks.filter(is_open=True).annotate(n=Count("pk"))),
        )
    )
    roles = dict(
        Membership.objects.filter(user=user, project__in=[p.pk for p in rows]).values_list(
            "project_id", "role"
        )
    )
    return [
        ProjectCard(
            project=project,
            role=roles.get(project.pk, Role.MANAGER),
            images=project.n_images,
            tasks=project.n_tasks,
            complete=project.n_complete,
            open_for_you=project.n_open,
        )
        for project in rows
    ]
