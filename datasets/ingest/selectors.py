"""Reads for the import pages and API: a project's jobs, a job's rows in input order."""

from collections.abc import Iterator

from django.db.models import QuerySet

from datasets.models import ImportJob, ImportRow, ImportStatus, Project, RowOutcome


def jobs_recent(*, project: Project, limit: int = 20) -> QuerySet[ImportJob]:
    """The project's newest jobs first, with who started them."""
    return project.import_jobs.select_related("created_by").order_by("-id")[:limit]


def job_get(*, project: Project, job_id: int) -> ImportJob | None:
    return project.import_jobs.select_related("created_by").filter(pk=job_id).first()


def jobs_ahead(*, job: ImportJob) -> int:
    """How many import jobs, of any project, a queued job waits behind on the ``ingest`` queue:
    the live ones created before it (a job started from the terminal runs there, not queued)."""
    return (
        ImportJob.objects.filter(
            status__in=(ImportStatus.QUEUED, ImportStatus.RUNNING), pk__lt=job.pk
        )
        .exclude(options__has_key="images_dir")
        .count()
    )


def job_rows_page(
    *, job: ImportJob, outcome: str | None, after: int | None, limit: int
) -> tuple[list[ImportRow], int | None]:
    """Up to ``limit`` rows in input order after position ``after`` (keyset paging), with the
    position to continue from, or None on the last page. ``outcome`` filters by outcome."""
    rows = ImportRow.objects.filter(job=job).select_related("image").order_by("position")
    if outcome in RowOutcome.values:
        rows = rows.filter(outcome=outcome)
    if after is not None:
        rows = rows.filter(position__gt=after)
    page = list(rows[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].position if more and page else None)


def job_rows_iter(*, job: ImportJob, outcome: str | None = None) -> Iterator[ImportRow]:
    """The job's rows in input order (optionally of one outcome), streamed in chunks."""
    rows = ImportRow.objects.filter(job=job).order_by("position")
    if outcome:
        rows = rows.filter(outcome=outcome)
    return rows.iterator(chunk_size=2000)
