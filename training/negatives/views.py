"""The manager's page of hard negatives: figures per source, scores, examples, mine now."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotate.agreement.charts import histogram_chart
from datasets import access
from datasets.pages import post_only
from training.negatives import selectors
from training.negatives.models import Outcome
from training.negatives.services.mining import (
    MiningRefused,
    mining_cancel,
    mining_request,
    mining_retry,
    mining_state,
)
from training.negatives.text_edits import text_edits_available
from training.registry.models import ModelVersion


@require_http_methods(["GET", "POST"])
def negatives_page(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    if request.method == "POST":
        mining_request(project=project)
        messages.success(
            request,
            "Mining queued: new proposals and challenge items appear here when a worker is done.",
        )
        return redirect("negatives", slug=project.slug)
    scores = selectors.scores_by_outcome(project=project)
    chart = histogram_chart(
        key="proposal-scores",
        title="Model score of judged proposals",
        series=[
            ("Confirmed negatives", "no-match", scores[Outcome.NEGATIVE]),
            ("Found positives", "match", scores[Outcome.POSITIVE]),
        ],
        low=-0.2,
        high=1.0,
        bins=12,
    )
    return render(
        request,
        "negatives/negatives.html",
        {
            "project": project,
            "rows": selectors.source_rows(project=project),
            "challenges": selectors.challenge_counts(project=project),
            "chart": chart,
            "confirmed": selectors.examples(project=project, outcome=Outcome.NEGATIVE),
            "found": selectors.examples(project=project, outcome=Outcome.POSITIVE),
            "pending": selectors.examples(project=project, outcome=Outcome.PENDING),
            "promoted": ModelVersion.objects.filter(project=project, is_promoted=True).first(),
            "text_edits_available": text_edits_available(project.language),
            "mining": mining_state(project=project),
        },
    )


@post_only("negatives", "cancel the mining")
def mining_cancel_view(request: HttpRequest, slug: str) -> HttpResponse:
    """Stop the queued or running mining (it stops at its next check; what it proposed so far
    stays); 409 with the reason when there is none to stop."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    try:
        mining_cancel(project=project, by=request.user)
    except MiningRefused as exc:
        return _refused(request, reason=str(exc), slug=project.slug)
    messages.success(request, "Mining cancelled.")
    return redirect("negatives", slug=project.slug)


@post_only("negatives", "retry the mining")
def mining_retry_view(request: HttpRequest, slug: str) -> HttpResponse:
    """Ask for mining again after it failed or was cancelled; 409 with the reason otherwise."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    try:
        mining_retry(project=project)
    except MiningRefused as exc:
        return _refused(request, reason=str(exc), slug=project.slug)
    messages.success(request, "Mining queued again.")
    return redirect("negatives", slug=project.slug)


def _refused(request: HttpRequest, *, reason: str, slug: str) -> HttpResponse:
    back = reverse("negatives", kwargs={"slug": slug})
    return render(request, "refused.html", {"reason": reason, "back": back}, status=409)
