"""The manager's review of duplicate clusters and quality flags. Thin: parse, call, render."""

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from datasets import access
from datasets.curation.services import cleaning, clusters
from datasets.models import CaptionFlag, DuplicateCluster, ImageFlag

CLUSTERS_PAGE_SIZE = 20
FLAGS_PAGE_SIZE = 50
CLUSTER_GONE = (
    "That cluster changed meanwhile (images were added or reclustered); here is the list again."
)


def duplicates_review(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    after = request.GET.get("after") or None
    page = clusters.clusters_page(project=project, after=after, limit=CLUSTERS_PAGE_SIZE)
    return render(
        request,
        "datasets/duplicates.html",
        {
            "project": project,
            "page": page,
            "summary": clusters.clusters_summary(project=project),
            "flag_counts": cleaning.flag_counts(project=project),
            "is_first_page": after is None,
            "unhashed": project.images.filter(hashed_at__isnull=True).count(),
        },
    )


@require_POST
def cluster_confirm(request: HttpRequest, slug: str, cluster_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    cluster = DuplicateCluster.objects.filter(project=project, pk=cluster_id).first()
    if cluster is None:
        messages.error(request, CLUSTER_GONE)
    else:
        clusters.cluster_confirm(cluster=cluster, user=request.user)
        messages.success(request, f"Confirmed: {cluster.size} copies of one picture.")
    return _back_to_review(request, project.slug)


@require_POST
def cluster_split(request: HttpRequest, slug: str, cluster_id: int, image_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    cluster = DuplicateCluster.objects.filter(project=project, pk=cluster_id).first()
    if cluster is None or not cluster.members.filter(image_id=image_id).exists():
        messages.error(request, CLUSTER_GONE)
    else:
        clusters.cluster_member_split(cluster=cluster, image_id=image_id, user=request.user)
        messages.success(request, f"Image {image_id} is no longer treated as a duplicate.")
    return _back_to_review(request, project.slug)


def _back_to_review(request: HttpRequest, slug: str) -> HttpResponse:
    response = redirect("duplicates-review", slug=slug)
    after = request.POST.get("after")
    if after:
        response["Location"] += "?" + urlencode({"after": after})
    return response


def quality_flags(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    image_after = _int_or_none(request.GET.get("image_after"))
    caption_after = _int_or_none(request.GET.get("caption_after"))
    return render(
        request,
        "datasets/quality.html",
        {
            "project": project,
            "image_flags": cleaning.image_flags_page(
                project=project, after=image_after, limit=FLAGS_PAGE_SIZE
            ),
            "caption_flags": cleaning.caption_flags_page(
                project=project, after=caption_after, limit=FLAGS_PAGE_SIZE
            ),
            "flag_counts": cleaning.flag_counts(project=project),
            "summary": clusters.clusters_summary(project=project),
        },
    )


@require_POST
def image_flag_override(request: HttpRequest, slug: str, flag_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    flag = get_object_or_404(ImageFlag, pk=flag_id, image__project=project)
    keep = request.POST.get("keep") != "0"
    cleaning.image_flag_override(flag=flag, user=request.user, overridden=keep)
    messages.success(
        request,
        f"Image {flag.image_id} {'kept despite' if keep else 'held back again for'}: {flag.message}",
    )
    return redirect("quality-flags", slug=project.slug)


@require_POST
def caption_flag_override(request: HttpRequest, slug: str, flag_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    flag = get_object_or_404(CaptionFlag, pk=flag_id, caption__image__project=project)
    keep = request.POST.get("keep") != "0"
    cleaning.caption_flag_override(flag=flag, user=request.user, overridden=keep)
    messages.success(request, f"Caption {flag.caption_id} {'kept' if keep else 'held back again'}.")
    return redirect("quality-flags", slug=project.slug)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
