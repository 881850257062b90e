"""Read-side queries of the browsing pages, written to stay fast on large projects."""

from dataclasses import dataclass

from django.db.models import Prefetch

from datasets.models import Caption, Image, Project


@dataclass(frozen=True)
class ImagePage:
    images: list[Image]
    next_after: int | None  # id to continue after, or None on the last page


@dataclass(frozen=True)
class ProjectCounts:
    images: int
    captions: int
    members: int


def images_page(*, project: Project, after: int | None, limit: int) -> ImagePage:
    """One page of a project's images in id order, with captions; keyset paging stays fast deep in."""
    queryset = project.images.order_by("id").prefetch_related(
        Prefetch("captions", queryset=Caption.objects.order_by("id"))
    )
    if after is not None:
        queryset = queryset.filter(id__gt=after)
    images = list(queryset[: limit + 1])
    has_more = len(images) > limit
    images = images[:limit]
    return ImagePage(images=images, next_after=images[-1].pk if has_more else None)


def project_counts(*, project: Project) -> ProjectCounts:
    return ProjectCounts(
        images=project.images.count(),
        captions=Caption.objects.filter(image__project=project).count(),
        members=project.memberships.count(),
    )
