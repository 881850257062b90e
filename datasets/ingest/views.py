"""The manager's upload page: files and zips in, one result per file out. Thin: parse, call, render."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from datasets import access
from datasets.ingest.forms import UploadForm
from datasets.ingest.services.uploads import upload_ingest
from datasets.models import Source


@require_http_methods(["GET", "POST"])
def project_upload(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    form = UploadForm(request.POST or None, request.FILES or None)
    results = []
    if request.method == "POST" and form.is_valid():
        for upload in form.cleaned_data["files"]:
            results.extend(
                upload_ingest(
                    project=project,
                    name=upload.name,
                    fileobj=upload,
                    source=Source.UPLOAD,
                    uploaded_by=request.user,
                )
            )
    context = {"project": project, "form": form, "results": results}
    if request.headers.get("X-Concord-Fragment") == "results":
        # The page's script uploads in batches and only needs the new result rows.
        return render(request, "datasets/upload.html#result-rows", context)
    return render(request, "datasets/upload.html", context)
