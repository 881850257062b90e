"""Pages that show a project's data: the project list and overview, the image grid and image
pages, and the stored files themselves. Thin: parse, call, render."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.core.handlers.wsgi import get_bytes_from_wsgi
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from rest_framework.exceptions import AuthenticationFailed

from annotate.queue.selectors import project_cards, project_progress
from config.storage import MEDIA, storage_response
from datasets import access
from datasets.browse import filters, selectors, services
from datasets.curation.services import cleaning
from datasets.models import Role

GRID_PAGE_SIZE = 60
PAIR_PAGE_SIZE = 50


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
    """The image grid, filtered on the server by the data browser's query parameters."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    params, error = _query_params(request)
    if error is None and _has_blank(params):
        return _canonical_redirect("image-grid", project.slug, params)
    spec = filters.FilterSpec()
    page = selectors.ImagePage(images=[], next_cursor=None)
    try:
        if error is not None:
            raise error
        spec = filters.filter_parse(params, images=True)
        page = selectors.images_page(project=project, spec=spec, limit=GRID_PAGE_SIZE)
    except filters.FilterError as exc:
        error = exc
    return render(
        request,
        "datasets/image_grid.html",
        {
            "project": project,
            "page": page,
            "counts": selectors.project_counts(project=project),
            "is_first_page": spec.cursor is None,
            **_filter_context(spec=spec, error=error, params=params, images=True),
            "next_query": _next_query(spec, page.next_cursor),
        },
        status=400 if error else 200,
    )


def pair_list(request: HttpRequest, slug: str) -> HttpResponse:
    """Every pair of the project, filtered, searched and sorted on the server, with actions on
    the whole filtered selection; the URL is the view (shareable) and the API's query."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    params, error = _query_params(request)
    if error is None and _has_blank(params):
        return _canonical_redirect("pair-list", project.slug, params)
    spec = filters.FilterSpec()
    page = selectors.PairPage(pairs=[], next_cursor=None)
    try:
        if error is not None:
            raise error
        spec = filters.filter_parse(params)
        page = selectors.pairs_page(project=project, spec=spec, limit=PAIR_PAGE_SIZE)
    except filters.FilterError as exc:
        error = exc
    return render(
        request,
        "datasets/pair_list.html",
        {
            "project": project,
            "page": page,
            "is_first_page": spec.cursor is None,
            **_filter_context(spec=spec, error=error, params=params, images=False),
            "next_query": _next_query(spec, page.next_cursor),
            "actions": services.ACTIONS,
            "max_selection": services.MAX_SELECTION,
        },
        status=400 if error else 200,
    )


@require_POST
def pairs_act(request: HttpRequest, slug: str) -> HttpResponse:
    """An action on every pair the posted filter (``query``, the list's query string) selects.

    Errors (every one, not only the first) answer 400 on the confirmation page; a selection of
    no pairs says there is nothing to do, with no button to confirm."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    back = reverse("pair-list", args=[project.slug])
    errors: list[str] = [
        f"{name}: {filters.GIVEN_TWICE}"
        for name in ("query", "action", "confirmed")
        if len(request.POST.getlist(name)) > 1
    ]
    query = request.POST.get("query", "")
    action = request.POST.get("action", "")
    spec = filters.FilterSpec()
    try:
        params = filters.query_parse(query[:4000].encode("utf-8", "surrogatepass"))
    except filters.FilterError as exc:
        errors.append(f"{exc.param}: {exc.message}")
    else:
        found = filters.filter_errors(params)
        errors += [f"{exc.param}: {exc.message}" for exc in found]
        if not found:
            spec = filters.filter_parse(params).first_page()
            back += "?" + urlencode(spec.query()) if spec.query() else ""
    if action not in services.ACTIONS:
        errors.append("action: " + services.UNKNOWN_ACTION)
    context = {"project": project, "back": back, "max_selection": services.MAX_SELECTION}
    if errors:
        return render(
            request, "datasets/pairs_confirm.html", {**context, "errors": errors}, status=400
        )
    try:
        ids = selectors.pair_ids(project=project, spec=spec, limit=services.MAX_SELECTION + 1)
        if request.POST.get("confirmed") != "1" or not ids:
            # One click must not turn a whole project gold: say how many pairs, then act.
            return render(
                request,
                "datasets/pairs_confirm.html",
                {
                    **context,
                    "action": action,
                    "action_words": services.ACTIONS[action],
                    "count": len(ids),
                    "too_many": len(ids) > services.MAX_SELECTION,
                    "query": urlencode(spec.query()),
                    "filtered": bool(spec.query()),
                },
            )
        outcome = services.selection_act(
            project=project, pair_ids=ids, action=action, by=request.user
        )
    except (filters.FilterError, ValueError) as exc:
        return render(
            request, "datasets/pairs_confirm.html", {**context, "errors": [str(exc)]}, status=400
        )
    messages.success(request, outcome.summary)
    return HttpResponseRedirect(back)


def _query_params(request: HttpRequest) -> tuple[dict[str, str], filters.FilterError | None]:
    """The query string's parameters, strictly (a name twice, bytes that are not UTF-8 and a
    nameless value are errors), with Django's lenient reading kept to refill the form."""
    try:
        raw = get_bytes_from_wsgi(request.META, "QUERY_STRING", "")
        return filters.query_parse(raw), None
    except filters.FilterError as exc:
        return request.GET.dict(), exc


def _filter_context(*, spec, error, params: dict[str, str], images: bool) -> dict:
    # After an error the form shows what was typed, so it can be corrected.
    values = (
        # ...but never a NUL, which an input cannot hold (the browser warns, the value is lost).
        {
            k: v
            for k, v in params.items()
            if k in filters.PARAMS and k != "cursor" and "\x00" not in v
        }
        if error
        else spec.query()
    )
    # Every error at once, so that one round trip corrects them all.
    every = (filters.filter_errors(params, images=images) or [error]) if error else []
    if error is not None and error.message in (
        filters.GIVEN_TWICE,
        filters.NO_NAME,
        filters.BAD_BYTES,
    ):
        every = [error]  # the query string itself, before any parameter could be read
    return {
        "spec": spec,
        "filter_error": error,
        "filter_errors": every,
        "values": values,
        "query": urlencode(spec.query()) if not error else "",
        "choices": {
            "label": filters.LABELS,
            "status": filters.STATUSES,
            "flagged": filters.YES_NO,
            "duplicate": filters.DUPLICATES,
            "split": filters.SPLITS,
            "source": filters.SOURCES,
            "kind": filters.KINDS,
            "disagree": filters.YES_NO,
            "excluded": filters.YES_NO,
            "gold": filters.YES_NO,
            "sort": filters.IMAGE_SORTS if images else filters.SORTS,
        },
    }


def _next_query(spec: filters.FilterSpec, cursor: filters.Cursor | None) -> str:
    return urlencode(spec.query(cursor=cursor)) if cursor is not None else ""


def _has_blank(params: dict[str, str]) -> bool:
    return any(_blank(key, value) for key, value in params.items())


def _blank(key: str, value: str) -> bool:
    return value == "" or (key == "sort" and value == filters.DEFAULT_SORT)


def _canonical_redirect(name: str, slug: str, params: dict[str, str]) -> HttpResponse:
    """The filter form sends every field; the shareable URL keeps only those that filter (the
    default sort included)."""
    kept = {key: value for key, value in params.items() if not _blank(key, value)}
    url = reverse(name, args=[slug])
    return HttpResponseRedirect(url + ("?" + urlencode(kept) if kept else ""))


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
    """The stored image: any image of the project for a manager, the images of their own tasks
    for an annotator (access.images_visible)."""
    project, role = access.project_get(user=request.user, slug=slug)
    visible = access.images_visible(user=request.user, project=project, role=role)
    image = get_object_or_404(visible.only("file", "format"), pk=image_id)
    return _serve(image.file.name, content_type=f"image/{image.format.lower()}")


@_file_user
def image_thumbnail(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    project, role = access.project_get(user=request.user, slug=slug)
    visible = access.images_visible(user=request.user, project=project, role=role)
    image = get_object_or_404(visible.only("file", "thumbnail", "format"), pk=image_id)
    if image.thumbnail:
        return _serve(image.thumbnail.name, content_type="image/jpeg")
    # No thumbnail yet (worker behind or away): the full image still shows.
    return _serve(image.file.name, content_type=f"image/{image.format.lower()}")


def _serve(name: str, *, content_type: str) -> HttpResponse:
    # Object storage: a short-lived signed URL instead of proxying bytes. Local storage: the
    # bytes, cacheable, since content never changes under a name (names carry the content hash
    # or image id).
    return storage_response(alias=MEDIA, name=name, content_type=content_type, cache_seconds=86400)
