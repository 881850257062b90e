"""The manager's agreement pages: dashboard, disputed items, adjudication and suspensions.
Managers only (datasets.access); thin: parse, call one service, render or redirect."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotate.agreement.selectors import (
    ItemsQueryError,
    ItemState,
    adjudication_of,
    dashboard_get,
    disputed_items,
    item_state_counts,
    items_listed,
    items_state_parse,
)
from annotate.agreement.services.consensus import item_adjudicate
from annotate.agreement.services.recomputes import recompute_progress, recompute_request
from annotate.agreement.services.suspensions import (
    SuspensionRefused,
    annotator_reinstate,
    annotator_suspend,
)
from datasets import access
from datasets.models import Membership, Pair
from datasets.pages import post_only

BAD_LABEL = "Choose match or no match."
# The Disputed page lists this many items a page (``?page=``, counted from 1).
DISPUTED_PAGE_SIZE = 50
PAGE_PARAM = "page"
BAD_PAGE = "Must be a page number: 1, 2, 3…"
PAST_LAST = "Past the last page of this list (page {last})."
GIVEN_TWICE = "Given twice; give each parameter once."
RECOMPUTE_QUEUED = "Recompute queued: the figures below change when it is done."
SUSPENDED = (
    "{user} is suspended: their answers no longer count. The labels and figures update shortly, "
    "when the recompute queued below is done."
)
REINSTATED = (
    "{user} is reinstated: their answers count again. The labels and figures update shortly, "
    "when the recompute queued below is done."
)


@require_GET
def agreement_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    sort = request.GET.get("sort", "flags")
    descending = request.GET.get("dir", "desc") != "asc"
    recompute = recompute_progress(project=project)
    if request.htmx and request.GET.get("part") == "recompute":
        return render(
            request,
            "annotate/agreement.html#recompute",
            {"project": project, "recompute": recompute},
        )
    dashboard = dashboard_get(project=project, sort=sort, descending=descending)
    return render(
        request,
        "annotate/agreement.html",
        {
            "project": project,
            "dashboard": dashboard,
            "snapshot": dashboard.snapshot,
            "recompute": recompute,
            "tab": "agreement",
            "show_tabs": True,
        },
    )


@require_POST
def agreement_recompute(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue a full recompute (on the agreement queue, with any waiting one); the page shows its
    progress. It never runs in the request: on a large project it takes minutes."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    recompute_request(project_id=project.pk, delay=0, full=True)
    messages.success(request, RECOMPUTE_QUEUED)
    return redirect("agreement", slug=project.slug)


@require_GET
def disputed_list(request: HttpRequest, slug: str) -> HttpResponse:
    """Items by state: by default those a manager should decide (waiting, then disputed);
    ``?state=`` lists any other state, so every judged item is on one of these lists, a page
    (``?page=``) of DISPUTED_PAGE_SIZE at a time."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    error, items, page, total, status = None, [], 1, 0, 200
    counts = item_state_counts(project=project)
    params = request.GET.dict()
    raw_page = params.pop(PAGE_PARAM, "")
    try:
        for name, values in request.GET.lists():
            if len(values) > 1:
                # Which one was meant? Said, like any other bad query, never the last one used.
                raise ItemsQueryError(name.replace("\x00", "\\0")[:50], GIVEN_TWICE)
        state = items_state_parse(params)
        if raw_page:
            page = _page_number(raw_page)
    except ItemsQueryError as exc:
        # Said on the page (and a 400), like the data browser's filters: a mistyped link must
        # not quietly show another list.
        error, state, status = exc, "", 400
    else:
        offset = (page - 1) * DISPUTED_PAGE_SIZE
        if state:
            total = counts[state]
            items = items_listed(
                project=project, state=state, limit=DISPUTED_PAGE_SIZE, offset=offset
            )
        else:
            total = counts[ItemState.WAITING] + counts[ItemState.DISPUTED]
            items = disputed_items(project=project, limit=offset + DISPUTED_PAGE_SIZE)[offset:]
        last = max(1, -(-total // DISPUTED_PAGE_SIZE))
        if page > last:
            # Not "No items in this state": the list has items, the link is past its end.
            error, status = ItemsQueryError(PAGE_PARAM, PAST_LAST.format(last=last)), 404
    first = (page - 1) * DISPUTED_PAGE_SIZE
    return render(
        request,
        "annotate/disputed.html",
        {
            "project": project,
            "items": items,
            "state": state,
            "states": [(value, ItemState(value).label, count) for value, count in counts.items()],
            "tab": "agreement",
            "show_tabs": True,
            "query_error": error,
            "total": total,
            "shown_from": first + 1,
            "shown_to": first + len(items),
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if first + len(items) < total else None,
        },
        status=status,
    )


def _page_number(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) >= 1):
        raise ItemsQueryError(PAGE_PARAM, BAD_PAGE)
    return int(raw)


@require_POST
def item_adjudicate_request(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    pair = get_object_or_404(Pair, pk=pair_id, image__project=project)
    label = request.POST.get("label")
    if label not in ("0", "1"):
        return HttpResponseBadRequest(BAD_LABEL)
    make_gold = request.POST.get("make_gold") == "on"
    before = adjudication_of(pair=pair)
    try:
        item_adjudicate(
            project=project, pair=pair, label=int(label), by=request.user, make_gold=make_gold
        )
    except ValueError as refused:
        messages.error(request, str(refused))
        return redirect("agreement-disputed", slug=project.slug)
    said = "Decided."
    if before is not None and before[0] != int(label):
        # A decision is final for the crowd, not for managers: a change is said, never silent.
        words = {0: "no match", 1: "match"}
        said = (
            f"Decision changed from {words[before[0]]} (by {before[1] or 'a manager'}) "
            f"to {words[int(label)]}."
        )
    messages.success(request, said + (" The pair is now a gold item." if make_gold else ""))
    return redirect("agreement-disputed", slug=project.slug)


@post_only("agreement", "suspend an annotator")
def annotator_suspend_request(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    annotator = _member(project, user_id)
    try:
        annotator_suspend(
            project=project,
            annotator=annotator,
            by=request.user,
            reason=request.POST.get("reason", "")[:1000],
        )
    except SuspensionRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, SUSPENDED.format(user=annotator.username))
    return redirect("agreement", slug=project.slug)


@post_only("agreement", "reinstate an annotator")
def annotator_reinstate_request(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    annotator = _member(project, user_id)
    try:
        annotator_reinstate(project=project, annotator=annotator, by=request.user)
    except SuspensionRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, REINSTATED.format(user=annotator.username))
    return redirect("agreement", slug=project.slug)


def _member(project, user_id: int):
    get_object_or_404(Membership, project=project, user_id=user_id)
    return get_object_or_404(get_user_model(), pk=user_id)
