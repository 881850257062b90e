"""The manager's upload and import pages, and each job's progress and results. Thin: parse, call
the service, render."""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from datasets import access
from datasets.ingest import selectors
from datasets.ingest.forms import CollectForm, ImportForm, UploadForm
from datasets.ingest.services.collection import (
    CollectionRefused,
    bucket_job_create,
    collection_job_create,
    collection_pause,
    collection_progress,
    collection_resume,
    collection_retry_failed,
)
from datasets.ingest.services.jobs import (
    ImportRefused,
    InputRefused,
    import_job_cancel,
    import_job_create,
    import_job_retry,
    import_job_retry_refusal,
    import_job_stopping,
    upload_job_create,
)
from datasets.models import ImportKind, ImportStatus, RowOutcome, Source
from datasets.pages import post_only

ROWS_PER_PAGE = 200


@require_http_methods(["GET", "POST"])
def project_upload(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    bound = request.method == "POST"
    form = UploadForm(request.POST if bound else None, request.FILES if bound else None)
    if request.method == "POST" and form.is_valid():
        try:
            job = upload_job_create(
                project=project,
                files=form.cleaned_data["files"],
                source=Source.UPLOAD,
                created_by=request.user,
            )
        except InputRefused as exc:
            form.add_error("files", str(exc))
        else:
            return redirect("import-job", slug=project.slug, job_id=job.pk)
    context = {"project": project, "form": form, "jobs": selectors.jobs_recent(project=project)}
    return render(request, "datasets/upload.html", context)


@require_http_methods(["GET", "POST"])
def project_import(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    bound = request.method == "POST"
    form = ImportForm(request.POST if bound else None, request.FILES if bound else None)
    if request.method == "POST" and form.is_valid():
        try:
            job = import_job_create(
                project=project,
                kind=form.cleaned_data["kind"],
                manifest=form.cleaned_data["manifest"] or None,
                images=form.cleaned_data["images"],
                created_by=request.user,
                encoding=form.cleaned_data["encoding"] or "auto",
            )
        except InputRefused as exc:
            form.add_error("manifest", str(exc))
        else:
            messages.success(request, "Import queued; a worker reads it row by row.")
            return redirect("import-job", slug=project.slug, job_id=job.pk)
    context = {"project": project, "form": form, "jobs": selectors.jobs_recent(project=project)}
    return render(request, "datasets/import.html", context)


def import_job(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    job = selectors.job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("No such import.")
    outcome = request.GET.get("outcome") or ""
    if outcome not in RowOutcome.values:
        outcome = ""
    after = _int_or_none(request.GET.get("after"))
    rows, next_after = selectors.job_rows_page(
        job=job, outcome=outcome or None, after=after, limit=ROWS_PER_PAGE
    )
    context = {
        "project": project,
        "job": job,
        "rows": rows,
        "next_after": next_after,
        "outcome": outcome,
        "outcomes": RowOutcome.choices,
        "is_first_page": after is None,
        "progress": (
            collection_progress(job=job)
            if job.kind in (ImportKind.COLLECT, ImportKind.BUCKET)
            else None
        ),
        "jobs_ahead": (
            selectors.jobs_ahead(job=job) if job.status == ImportStatus.QUEUED else None
        ),
        "stopping": import_job_stopping(job=job),
        "retry_refusal": (
            import_job_retry_refusal(job=job)
            if job.status in (ImportStatus.FAILED, ImportStatus.CANCELLED)
            else ""
        ),
    }
    if request.htmx and request.GET.get("part") == "status":
        response = render(request, "datasets/import_job.html#job-status", context)
        if not job.is_live:
            response["HX-Refresh"] = "true"  # finished: load the page again with its results
        return response
    return render(request, "datasets/import_job.html", context)


@require_http_methods(["GET", "POST"])
def project_collect(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    bound = request.method == "POST"
    form = CollectForm(request.POST if bound else None, request.FILES if bound else None)
    if bound and form.is_valid():
        data = form.cleaned_data
        try:
            if data["manifest"]:
                job = collection_job_create(
                    project=project,
                    manifest=data["manifest"],
                    created_by=request.user,
                    url_column=data["url_column"],
                    caption_column=data["caption_column"],
                )
            else:
                job = bucket_job_create(
                    project=project,
                    bucket=data["bucket"],
                    prefix=data["prefix"],
                    captions_key=data["captions_key"],
                    created_by=request.user,
                )
        except InputRefused as exc:
            form.add_error("manifest", str(exc))
        else:
            messages.success(request, "Collection queued; workers fetch its URLs row by row.")
            return redirect("import-job", slug=project.slug, job_id=job.pk)
    context = {"project": project, "form": form, "jobs": selectors.jobs_recent(project=project)}
    return render(request, "datasets/collect.html", context)


def _collection_action(action):
    @require_POST
    def view(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        job = selectors.job_get(project=project, job_id=job_id)
        if job is None:
            raise Http404("No such import.")
        try:
            done = action(job=job)
        except CollectionRefused as exc:
            messages.error(request, str(exc))
        else:
            if isinstance(done, int):
                messages.success(request, f"{done} failed row(s) queued again.")
        return redirect("import-job", slug=project.slug, job_id=job.pk)

    return view


collection_pause_view = _collection_action(collection_pause)
collection_resume_view = _collection_action(collection_resume)
collection_retry_view = _collection_action(collection_retry_failed)


@post_only("import-job", "cancel an import")
def import_job_cancel_view(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """Stop a queued or running import (it is cancelled; Retry runs it on); 409 with the
    reason when its state does not allow it."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    job = selectors.job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("No such import.")
    try:
        import_job_cancel(job=job, by=request.user)
    except ImportRefused as exc:
        return _refused(request, reason=str(exc), slug=project.slug, job_id=job.pk)
    messages.success(request, f"Import {job.pk} cancelled: the rows read so far are kept.")
    return redirect("import-job", slug=project.slug, job_id=job.pk)


@post_only("import-job", "retry an import")
def import_job_retry_view(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """Queue a failed or cancelled import again (it resumes after the rows already read); 409
    with the reason when it cannot be."""
    project, _ = access.project_get(user=request.user, slug=slug, manager=True)
    job = selectors.job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("No such import.")
    try:
        import_job_retry(job=job)
    except ImportRefused as exc:
        return _refused(request, reason=str(exc), slug=project.slug, job_id=job.pk)
    messages.success(request, f"Import {job.pk} queued again.")
    return redirect("import-job", slug=project.slug, job_id=job.pk)


def _refused(request: HttpRequest, *, reason: str, slug: str, job_id: int) -> HttpResponse:
    back = reverse("import-job", kwargs={"slug": slug, "job_id": job_id})
    return render(request, "refused.html", {"reason": reason, "back": back}, status=409)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
