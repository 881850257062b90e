"""Manager page of a project's model versions: metrics over versions as charts, per version its
progress, per-split tables, threshold and confusion, training curves; train now."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRefresh

from datasets import access
from datasets.pages import post_only
from training.registry import selectors, services
from training.registry.models import ModelVersion


@require_http_methods(["GET", "POST"])
def model_list(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    if request.method == "POST":
        try:
            version, new = services.model_request_once(project=project)
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            if new:
                messages.success(
                    request, f"Model #{version.pk} queued; it trains in the background."
                )
            else:
                messages.info(
                    request,
                    f"Model #{version.pk} of the same release and settings is already "
                    f"{version.get_status_display().lower()}: no second run was queued.",
                )
        return redirect("models", slug=project.slug)
    page = selectors.model_page(project=project)
    return render(request, "training_registry/models.html", {"project": project, "page": page})


@require_GET
def model_card(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """One version's card; the page polls it while the version is queued or training, and
    reloads itself once the run has ended so the charts over versions take it in."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    version = get_object_or_404(
        ModelVersion.objects.select_related("release"), project=project, pk=pk
    )
    card = selectors.version_card(version=version, expanded=True)
    if request.htmx and not card.running:
        return HttpResponseClientRefresh()
    return render(
        request,
        "training_registry/models.html#version-card",
        {"project": project, "card": card},
    )


@post_only("models", "cancel a training run")
def model_cancel(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Stop a queued or training run (it ends cancelled after its current epoch, nothing of it
    kept); 409 with the reason when its status does not allow it."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    version = get_object_or_404(ModelVersion, project=project, pk=pk)
    try:
        services.model_cancel(version=version, by=request.user)
    except services.TrainingRefused as exc:
        return _refused(request, reason=str(exc), slug=project.slug)
    messages.success(request, f"Model #{version.pk} cancelled.")
    return redirect("models", slug=project.slug)


@post_only("models", "retry a training run")
def model_retry(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Queue a failed or cancelled run again; 409 with the reason otherwise."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    version = get_object_or_404(ModelVersion, project=project, pk=pk)
    try:
        services.model_retry(version=version)
    except services.TrainingRefused as exc:
        return _refused(request, reason=str(exc), slug=project.slug)
    messages.success(request, f"Model #{version.pk} queued again.")
    return redirect("models", slug=project.slug)


def _refused(request: HttpRequest, *, reason: str, slug: str) -> HttpResponse:
    back = reverse("models", kwargs={"slug": slug})
    return render(request, "refused.html", {"reason": reason, "back": back}, status=409)
