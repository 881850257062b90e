"""The manager's page of hard negatives: figures per source, scores, examples, mine now."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotate.charts import histogram_chart
from datasets import access
from negatives import stats
from negatives.mining import mining_request
from negatives.models import Outcome
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
    scores = stats.scores_by_outcome(project=project)
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
            "rows": stats.source_rows(project=project),
            "challenges": stats.challenge_counts(project=project),
            "chart": chart,
            "confirmed": stats.examples(project=project, outcome=Outcome.NEGATIVE),
            "found": stats.examples(project=project, outcome=Outcome.POSITIVE),
            "pending": stats.examples(project=project, outcome=Outcome.PENDING),
            "promoted": ModelVersion.objects.filter(project=project, is_promoted=True).first(),
        },
    )
