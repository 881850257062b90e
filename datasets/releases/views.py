"""Manager pages for releases: list and cut, progress, detail with datasheet, downloads, pin."""

import re
from pathlib import PurePosixPath

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from config.storage import RELEASES, storage_response
from datasets import access
from datasets.models import Release, ReleaseStatus
from datasets.releases import services
from datasets.releases.archive import files_by_folder, zip_stream
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
        required=False,
        initial=False,
        help_text="Under images/; not with WebDataset, whose shards already hold every image. "
        "Otherwise rows name the stored files.",
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


# Where a file's path and hash may wrap on a narrow screen (the template puts a <wbr> between the
# pieces; nothing else in those cells breaks): after a slash, underscore or hyphen, before a dot,
# and between groups of 16 in a long hex run (content-named images, SHA-256 sums), which is how
# hashes are read and compared anyway. A phone then never shows "pairs.jso|nl" or "byt|es".
_PATH_BREAKS = re.compile(r"(?<=[/_-])|(?=\.)")
_HEX_RUN = re.compile(r"([0-9a-f]{32,})")
_HEX_GROUP = 16


def _pieces(text: str) -> list[str]:
    pieces = []
    for part in _PATH_BREAKS.split(text):
        for run in _HEX_RUN.split(part):
            if _HEX_RUN.fullmatch(run):
                pieces += [run[i : i + _HEX_GROUP] for i in range(0, len(run), _HEX_GROUP)]
            elif run:
                pieces.append(run)
    return pieces


def _breakable(entry: dict) -> dict:
    return {
        **entry,
        "path_pieces": _pieces(str(entry["path"])),
        "sha_pieces": _pieces(str(entry.get("sha256") or "")),
    }


def release_detail(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    release = get_object_or_404(Release, project=project, version=version)
    files, datasheet, files_error = [], "", ""
    if release.status == ReleaseStatus.READY:
        try:
            files = services.release_files(release=release)
            datasheet = services.release_datasheet(release=release)
        except services.ReleaseFilesError as exc:
            files_error = str(exc)
    return render(
        request,
        "datasets/release_detail.html",
        {
            "project": project,
            "release": release,
            "files": files,
            "folders": files_by_folder([_breakable(entry) for entry in files]),
            "files_error": files_error,
            "datasheet": datasheet,
            "diff": (release.counts or {}).get("diff"),
            "keep": settings.CONCORD_RELEASES_KEEP,
        },
    )


@require_POST
def release_pin(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    """Pin (kept forever, whatever the retention setting) or unpin a release."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    release = get_object_or_404(Release, project=project, version=version)
    pinned = request.POST.get("pinned") == "1"
    try:
        services.release_pin(release=release, pinned=pinned)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"{release.name} pinned: kept forever."
            if pinned
            else f"{release.name} unpinned: retention may prune it.",
        )
    return redirect("release-detail", slug=project.slug, version=release.version)


def release_download_all(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    """Every file of a ready release as one zip, streamed as it is written (read from the
    ``releases`` storage one file at a time, local or object storage alike)."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    release = get_object_or_404(
        Release, project=project, version=version, status=ReleaseStatus.READY
    )
    try:
        members = services.release_archive_members(release=release)
    except services.ReleaseFilesError as exc:
        raise Http404(str(exc)) from None
    response = StreamingHttpResponse(zip_stream(members), content_type="application/zip")
    name = services.release_archive_name(release=release)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_POST
def release_retry(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    """Queue a failed release's build again."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    release = get_object_or_404(Release, project=project, version=version)
    try:
        services.release_retry(release=release)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{release.name} queued again.")
    return redirect("release-detail", slug=project.slug, version=release.version)


@require_POST
def release_cancel(request: HttpRequest, slug: str, version: int) -> HttpResponse:
    """Stop a queued or building release (it fails as cancelled; Retry builds it again)."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    release = get_object_or_404(Release, project=project, version=version)
    try:
        services.release_cancel(release=release, by=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{release.name} cancelled.")
    return redirect("release-detail", slug=project.slug, version=release.version)


def release_file(request: HttpRequest, slug: str, version: int, name: str) -> HttpResponse:
    return release_file_response(user=request.user, slug=slug, version=version, name=name)


def release_file_response(*, user, slug: str, version: int, name: str) -> HttpResponse:
    """A file of a ready release: streamed from a local storage, or a redirect to a short-lived
    signed URL on object storage; only paths its manifest lists. Shared with the API."""
    project, _ = access.project_get(user=user, slug=slug, manager=True)
    release = get_object_or_404(
        Release, project=project, version=version, status=ReleaseStatus.READY
    )
    try:
        stored = services.release_file_name(release=release, path=name)
    except services.ReleaseFilesError as exc:
        raise Http404(str(exc)) from None
    if stored is None:
        raise Http404("No such file in this release.")
    try:
        return storage_response(alias=RELEASES, name=stored, filename=PurePosixPath(name).name)
    except FileNotFoundError:
        raise Http404("This file is listed but missing from storage.") from None
