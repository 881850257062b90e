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

BAD_LABEL = "Choose match or no match."
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
    ``?state=`` lists any other state, so every judged item is on one of these lists."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    error, items = None, []
    try:
        state = items_state_parse(request.GET.dict())
    except ItemsQueryError as exc:
        # Said on the page (and a 400), like the data browser's filters: a mistyped link must
        # not quietly show another list.
        error, state = exc, ""
    else:
        if state:
            items = items_listed(project=project, state=state)
        else:
            items = disputed_items(project=project)
    return render(
        request,
        "annotate/disputed.html",
        {
            "project": project,
            "items": items,
            "state": state,
            "states": [
                (value, ItemState(value).label, count)
                for value, count in item_state_counts(project=project).items()
            ],
            "tab": "agreement",
            "show_tabs": True,
            "query_error": error,
        },
        status=400 if error else 200,
    )


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


@require_POST
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


@require_POST
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
