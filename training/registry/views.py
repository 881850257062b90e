"""Manager page of a project's model versions: metrics per split, the promoted one, train now."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from datasets import access
from training.registry import versions

# (metric key, column heading) shown per split.
COLUMNS = [
    ("i2t_r1", "I→T R@1"),
    ("i2t_r5", "I→T R@5"),
    ("i2t_r10", "I→T R@10"),
    ("t2i_r1", "T→I R@1"),
    ("t2i_r5", "T→I R@5"),
    ("t2i_r10", "T→I R@10"),
    ("f1", "F1"),
    ("ap", "AP"),
]
SPLITS = ("train", "val", "test")


def _rows(version) -> list[dict]:
    rows = []
    for split in SPLITS:
        values = version.metrics.get(split)
        if not values:
            continue
        cells = []
        for key, _ in COLUMNS:
            value = values.get(key)
            cells.append("" if value is None else f"{100 * value:.1f}")
        rows.append({"split": split, "cells": cells})
    return rows


@require_http_methods(["GET", "POST"])
def model_list(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    if request.method == "POST":
        try:
            version = versions.model_request(project=project)
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Model #{version.pk} queued; it trains in the background.")
        return redirect("models", slug=project.slug)
    items = [
        {"version": version, "rows": _rows(version)}
        for version in project.model_versions.select_related("release").order_by("-pk")
    ]
    return render(
        request,
        "training_registry/models.html",
        {
            "project": project,
            "items": items,
            "columns": [heading for _, heading in COLUMNS],
            "has_release": versions.newest_ready_release(project=project) is not None,
        },
    )
