"""Pages that show a project's data: the project list and overview, the image grid and image
pages, and the stored files themselves. Thin: parse, call, render."""

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from rest_framework.exceptions import AuthenticationFailed

from annotate.queue.selectors import project_cards, project_progress
from config.storage import MEDIA, storage_response
from datasets import access
from datasets.browse import selectors
from datasets.curation.services import cleaning
from datasets.models import Image, Role

GRID_PAGE_SIZE = 60


def home(request: HttpRequest) -> HttpResponse:
    visible = access.projects_visible(user=request.user).order_by("name")
    return render(
        request,
        "datasets/home.html",
        {
            "projects": project_cards(projects=visible, user=request.user),
            "can_create": access.can_create_projects(request.user),
        },
    )


def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = access.project_get(user=request.user, slug=slug)
    context = {
        "project": project,
        "role": role,
        "is_manager": role == Role.MANAGER,
        "progress": project_progress(project=project),
    }
    if role == Role.MANAGER:
        context["counts"] = selectors.project_counts(project=project)
        context["cleaning"] = cleaning.cleaning_overview(project=project)
    return render(request, "datasets/project_detail.html", context)


def image_grid(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    after = _int_or_none(request.GET.get("after"))
    page = selectors.images_page(project=project, after=after, limit=GRID_PAGE_SIZE)
    return render(
        request,
        "datasets/image_grid.html",
        {
            "project": project,
            "page": page,
            "counts": selectors.project_counts(project=project),
            "is_first_page": after is None,
        },
    )


def image_detail(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    image = get_object_or_404(
        project.images.select_related("uploaded_by").prefetch_related(
            "captions__author", "pairs__caption", "pairs__tasks"
        ),
        pk=image_id,
    )
    return render(request, "datasets/image_detail.html", {"project": project, "image": image})


def _file_user(view):
    """Stored files are fetched by pages (a session) and by API clients (a token: the image_url
    and file_url of the API), under the same access check; nobody else gets past the login."""

    @login_not_required
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            user = access.request_user(request)
        except AuthenticationFailed as exc:
            return JsonResponse({"detail": str(exc.detail)}, status=401)
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        request.user = user
        return view(request, *args, **kwargs)

    return wrapper


@_file_user
def image_file(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    """The stored image, for any member of its project (annotators need it for their tasks)."""
    project, _ = access.project_get(user=request.user, slug=slug)
    image = get_object_or_404(Image.objects.only("file", "format"), project=project, pk=image_id)
    return _serve(image.file.name, content_type=f"image/{image.format.lower()}")


@_file_user
def image_thumbnail(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug)
    image = get_object_or_404(
        Image.objects.only("file", "thumbnail", "format"), project=project, pk=image_id
    )
    if image.thumbnail:
        return _serve(image.thumbnail.name, content_type="image/jpeg")
    # No thumbnail yet (worker behind or away): the full image still shows.
    return _serve(image.file.name, content_type=f"image/{image.format.lower()}")


def _serve(name: str, *, content_type: str) -> HttpResponse:
    # Object storage: a short-lived signed URL instead of proxying bytes. Local storage: the
    # bytes, cacheable, since content never changes under a name (names carry the content hash
    # or image id).
    return storage_response(alias=MEDIA, name=name, content_type=content_type, cache_seconds=86400)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
