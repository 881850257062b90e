"""Manager and member pages for projects, uploads and the image grid. Thin: parse, call, render."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotate.progress import project_progress
from datasets import access, cleaning, projects, selectors
from datasets.forms import MemberForm, ProjectForm, UploadForm
from datasets.ingest import upload_ingest
from datasets.models import Image, Role, Source

GRID_PAGE_SIZE = 60


def home(request: HttpRequest) -> HttpResponse:
    visible = access.projects_visible(user=request.user).order_by("name")
    return render(
        request,
        "datasets/home.html",
        {"projects": visible, "can_create": access.can_create_projects(request.user)},
    )


@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    if not access.can_create_projects(request.user):
        raise PermissionDenied(access.CANNOT_CREATE_PROJECTS)
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = projects.project_create(creator=request.user, **form.settings())
        messages.success(request, f"Project “{project.name}” created.")
        return redirect("project-detail", slug=project.slug)
    return render(request, "datasets/project_form.html", {"form": form, "creating": True})


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


@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    form = ProjectForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        projects.project_update(project=project, **form.settings())
        messages.success(request, "Settings saved.")
        return redirect("project-detail", slug=project.slug)
    return render(
        request, "datasets/project_form.html", {"form": form, "project": project, "creating": False}
    )


@require_http_methods(["GET", "POST"])
def project_members(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    form = MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            projects.membership_set(
                project=project, user=form.cleaned_data["user"], role=form.cleaned_data["role"]
            )
        except projects.MembershipError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{form.cleaned_data['username']} is now a member.")
        return redirect("project-members", slug=project.slug)
    return render(
        request,
        "datasets/members.html",
        {
            "project": project,
            "form": form,
            "members": selectors.project_members(project=project),
            "roles": Role.choices,
        },
    )


@require_POST
def project_member_remove(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    membership = get_object_or_404(project.memberships.select_related("user"), user_id=user_id)
    try:
        projects.membership_remove(project=project, user=membership.user)
    except projects.MembershipError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.username} removed.")
    return redirect("project-members", slug=project.slug)


@require_http_methods(["GET", "POST"])
def project_upload(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    form = UploadForm(request.POST or None, request.FILES or None)
    results = []
    if request.method == "POST" and form.is_valid():
        for upload in form.cleaned_data["files"]:
            results.extend(
                upload_ingest(
                    project=project,
                    name=upload.name,
                    fileobj=upload,
                    source=Source.UPLOAD,
                    uploaded_by=request.user,
                )
            )
    context = {"project": project, "form": form, "results": results}
    if request.headers.get("X-Concord-Fragment") == "results":
        # The page's script uploads in batches and only needs the new result rows.
        return render(request, "datasets/upload.html#result-rows", context)
    return render(request, "datasets/upload.html", context)


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


def image_file(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    """The stored image, for any member of its project (annotators need it for their tasks)."""
    project, _ = access.project_get(user=request.user, slug=slug)
    image = get_object_or_404(Image.objects.only("file", "format"), project=project, pk=image_id)
    return _serve(image.file.name, content_type=f"image/{image.format.lower()}")


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
    try:
        default_storage.path(name)
    except NotImplementedError:
        # Object storage: hand the browser a short-lived signed URL instead of proxying bytes.
        return HttpResponseRedirect(default_storage.url(name))
    response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    # Content never changes under a name (names carry the content hash or image id).
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
