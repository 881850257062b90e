"""Manager pages for releases: list and cut, progress, detail with datasheet, downloads."""

from django import forms
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from datasets import access
from datasets.models import Release, ReleaseStatus
from datasets.releases import services
from datasets.releases.balance import METHODS
from datasets.releases.exporters import FORMATS

FORMAT_LABELS = {
    "jsonl": "JSONL",
    "csv": "CSV",
    "parquet": "Parquet (always written)",
    "coco": "COCO captions JSON",
    "webdataset": "WebDataset shards",
}


class ReleaseForm(forms.Form):
    formats = forms.MultipleChoiceField(
        choices=[(name, FORMAT_LABELS[name]) for name in FORMATS],
        widget=forms.CheckboxSelectMultiple,
        initial=list(FORMATS),
    )
    copy_images = forms.BooleanField(
        required=False, initial=True, help_text="Otherwise rows reference the stored files."
    )
    balance_method = forms.ChoiceField(choices=[(m, m) for m in METHODS])
    balance_ratio = forms.FloatField(min_value=0.001, help_text="Negatives per positive, train.")


@require_http_methods(["GET", "POST"])
def release_list(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    initial = {"balance_method": project.balance_method, "balance_ratio": project.balance_ratio}
    form = ReleaseForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            options = services.release_options(project=project, **form.cleaned_data)
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            release = services.release_request(project=project, user=request.user, options=options)
            messages.success(
                request, f"Release {release.name} queued; it builds in the background."
            )
            return redirect("releases", slug=project.slug)
    return render(
        request,
        "datasets/releases.html",
        {"project": project, "form": form, "releases": project.releases.order_by("-version")},
    )


def release_row(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    """One row of the list; the page polls it while the release builds."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    release = get_object_or_404(Release, project=project, version=version)
    return render(
        request, "datasets/releases.html#release-row", {"project": project, "release": release}
    )


def release_detail(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    release = get_object_or_404(Release, project=project, version=version)
    datasheet = ""
    path = services.release_file_path(release=release, name="DATASHEET.md")
    if path is not None and path.is_file():
        datasheet = path.read_text(encoding="utf-8")
    return render(
        request,
        "datasets/release_detail.html",
        {
            "project": project,
            "release": release,
            "files": services.release_files(release=release),
            "datasheet": datasheet,
            "diff": (release.counts or {}).get("diff"),
        },
    )


def release_file(request: HttpRequest, slug: str, version: int, name: str) -> FileResponse:
    return release_file_response(user=request.user, slug=slug, version=version, name=name)


def release_file_response(*, user, slug: str, version: int, name: str) -> FileResponse:
    """A file of a ready release, streamed; only paths its manifest lists. Shared with the API."""
    project, _ = access.project_get(user=user, slug=slug, manager=True)
    release = get_object_or_404(
        Release, project=project, version=version, status=ReleaseStatus.READY
    )
    path = services.release_file_path(release=release, name=name)
    if path is None or not path.is_file():
        raise Http404("No such file in this release.")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)
