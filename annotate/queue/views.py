"""The annotator's screen: one page per project, swapped in place by htmx, usable without JS."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotate.models import Answer, Lease, TaskKind
from annotate.queue.selectors import annotator_progress, undo_deadline
from annotate.queue.services import challenges
from annotate.queue.services.judgments import (
    SubmitRefused,
    caption_check_for,
    caption_rules_for,
    judgment_submit,
    judgment_undo,
)
from annotate.queue.services.leases import (
    assignment_get,
    is_suspended,
    lease_skip,
    leases_heartbeat,
)
from annotate.queue.services.pool import GOLD_ANSWERS, GOLD_BAD_ANSWER, gold_set
from config.celery import enqueue_on_commit
from datasets import access
from datasets.models import Pair

BAD_ANSWER = "Choose match, no match or unsure."
# Session key: the caption an undo took back, for the next page of the same lease.
UNDONE_TEXT = "annotate_undone_text"
NUL_IN_CAPTION = (
    "The caption contained an invisible NUL character; it was removed. Check it and send again."
)


@require_GET
def annotate_page(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug)
    return _workspace(request, project)


@require_POST
def annotate_submit(request: HttpRequest, slug: str, lease_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, need=access.WORK)
    lease = get_object_or_404(Lease, pk=lease_id, project=project, annotator=request.user)
    answer = request.POST.get("answer", "")
    if answer not in Answer.values:
        return _workspace(request, project, error=BAD_ANSWER)
    text = request.POST.get("caption_text", "")
    if "\x00" in text:  # the database cannot store it: the same task, the text kept without it
        return _workspace(
            request, project, problems=[NUL_IN_CAPTION], text=text.replace("\x00", "")
        )
    marked = [int(v) for v in request.POST.getlist("marked") if v.isascii() and v.isdigit()]
    try:
        judgment_submit(
            lease=lease,
            answer=answer,
            caption_text=text,
            image_unusable=request.POST.get("image_unusable") == "on",
            caption_offensive=request.POST.get("caption_offensive") == "on",
            marked=marked,
        )
    except SubmitRefused as refused:
        if refused.problems:  # the caption broke a writing rule: same task, text kept
            return _workspace(request, project, problems=refused.problems, text=text)
        return _workspace(request, project, error=str(refused), kept_text=refused.text)
    return _after_post(request, project)


@require_POST
def annotate_check(request: HttpRequest, slug: str, lease_id: int) -> JsonResponse:
    """The live check of the caption box: the server's own verdict on the text so far, so the
    page shows exactly what submitting would say, in every script. Only the lease's own
    annotator, with the right to work, asks (as for submitting)."""
    project, _ = access.project_get(user=request.user, slug=slug, need=access.WORK)
    lease = get_object_or_404(
        Lease.objects.select_related("task__image", "task__project"),
        pk=lease_id,
        project=project,
        annotator=request.user,
    )
    text = request.POST.get("caption_text", "")
    if "\x00" in text:  # what submitting says of it (annotate_submit), so the page never shows ✓
        return JsonResponse({"ok": False, "problems": [NUL_IN_CAPTION], "summary": ""})
    verdict = caption_check_for(task=lease.task, text=text)
    return JsonResponse(
        {"ok": verdict.ok, "problems": verdict.problems, "summary": verdict.summary}
    )


@require_POST
def annotate_skip(request: HttpRequest, slug: str, lease_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, need=access.WORK)
    lease = get_object_or_404(Lease, pk=lease_id, project=project, annotator=request.user)
    lease_skip(lease=lease)
    return _after_post(request, project)


@require_POST
def annotate_undo(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, need=access.WORK)
    try:
        undone = judgment_undo(project=project, annotator=request.user)
    except SubmitRefused as refused:
        return _workspace(request, project, error=str(refused))
    if undone.caption_text:
        # The caption goes back in its box, to edit and send again (the page without
        # JavaScript gets it too: it is shown once on the page the redirect leads to).
        if request.htmx:
            return _workspace(
                request,
                project,
                notice="Caption undone: here it is again.",
                text=undone.caption_text,
            )
        request.session[UNDONE_TEXT] = {"lease": undone.lease.pk, "text": undone.caption_text}
        return _after_post(request, project, notice="Caption undone: here it is again.")
    return _after_post(request, project, notice="Answer undone: here it is again.")


@require_POST
def annotate_heartbeat(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, need=access.WORK)
    leases_heartbeat(project=project, annotator=request.user)
    return HttpResponse(status=204)


@require_POST
def tasks_open_request(request: HttpRequest, slug: str) -> HttpResponse:
    """Managers ask a worker to create the tasks new images and pairs need."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    enqueue_on_commit("queue.open_tasks", project.pk, what=f"opening tasks of {project.slug}")
    messages.success(request, "Tasks for new images and pairs are being created in the background.")
    return redirect("project-detail", slug=project.slug)


def _after_post(request: HttpRequest, project, notice: str = "") -> HttpResponse:
    if request.htmx:
        return _workspace(request, project, notice=notice)
    if notice:
        messages.info(request, notice)
    # Post/redirect/get: a reload never re-submits.
    return redirect(reverse("annotate", kwargs={"slug": project.slug}))


def _workspace(
    request: HttpRequest,
    project,
    *,
    error: str = "",
    notice: str = "",
    problems: list[str] | None = None,
    text: str = "",
    kept_text: str = "",
) -> HttpResponse:
    assignment = assignment_get(project=project, annotator=request.user)
    lease = assignment.current
    undone = request.session.pop(UNDONE_TEXT, None)
    if undone and lease is not None and undone.get("lease") == lease.pk and not text:
        text = undone.get("text", "")
    # "Saved. Undo" belongs beside a saved answer only: never beside one the server refused.
    refused = bool(error or problems or kept_text)
    context = {
        "project": project,
        "lease": lease,
        "task": lease.task if lease else None,
        "upcoming": assignment.upcoming,
        "is_caption": lease is not None and lease.task.kind == TaskKind.CAPTION,
        "is_challenge": lease is not None and lease.task.kind == TaskKind.CHALLENGE,
        "options": _options(lease),
        "rules": caption_rules_for(project),
        "progress": annotator_progress(project=project, annotator=request.user),
        "suspended": lease is None and is_suspended(project=project, annotator=request.user),
        "undo_until": None if refused else undo_deadline(project=project, annotator=request.user),
        "error": error,
        "notice": notice,
        "problems": problems or [],
        "text": text,
        "kept_text": kept_text,
    }
    template = "annotate/annotate.html#workspace" if request.htmx else "annotate/annotate.html"
    return render(request, template, context)


def _options(lease: Lease | None) -> list[challenges.ShownOption]:
    if lease is None or lease.task.kind != TaskKind.CHALLENGE:
        return []
    return challenges.options_shown(
        options=challenges.options_for(task=lease.task), lease_id=lease.pk
    )


@require_POST
def pair_gold_set(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    """Managers mark a pair as gold with its known answer, from the image page."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    pair = get_object_or_404(
        Pair.objects.select_related("image"), pk=pair_id, image__project=project
    )
    answer = request.POST.get("answer", "")
    if answer not in GOLD_ANSWERS:
        messages.error(request, GOLD_BAD_ANSWER)
    else:
        gold_set(pair=pair, answer=answer)
        messages.success(request, f"Gold item set: {Answer(answer).label.lower()}.")
    return redirect("image-detail", slug=project.slug, image_id=pair.image_id)
