"""collect_urls: a URL manifest collected as a job, queued for the workers or run here."""

from pathlib import Path

from django.core.files.base import File
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from datasets.ingest.services.collection import (
    bucket_job_create,
    collection_job_create,
    collection_progress,
    collection_run,
    collection_stage,
)
from datasets.ingest.services.jobs import InputRefused
from datasets.models import ImportRow, ImportStatus, Project, RowOutcome

FAILED_ROWS_SHOWN = 20


class Command(BaseCommand):
    help = (
        "Collect images from a manifest of URLs (CSV, TSV, JSONL or Parquet; img2dataset's "
        "url/caption columns) or from an S3 prefix (--bucket). By default the job is queued for the Celery workers; --here "
        "fetches it in this process until every row has its outcome."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="slug of the project to collect into")
        parser.add_argument("file", type=Path, nargs="?", help="the URL manifest")
        parser.add_argument("--bucket", help="instead of a file: every image under an S3 prefix")
        parser.add_argument("--prefix", default="")
        parser.add_argument(
            "--captions-key", default="", help="a key/caption manifest in the bucket (else .txt)"
        )
        parser.add_argument("--url-column", default="url")
        parser.add_argument("--caption-column", default="caption")
        parser.add_argument(
            "--here", action="store_true", help="fetch in this process instead of the workers"
        )

    def handle(self, *args, project, file, url_column, caption_column, here, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        if (file is None) == (options["bucket"] is None):
            raise CommandError("Give a manifest file or --bucket (one of them).")
        if file is not None and not file.is_file():
            raise CommandError(f"{file} does not exist.")
        try:
            if file is None:
                job = bucket_job_create(
                    project=target,
                    bucket=options["bucket"],
                    prefix=options["prefix"],
                    captions_key=options["captions_key"],
                    created_by=None,
                )
            else:
                job = self._manifest_job(target, file, url_column, caption_column)
        except InputRefused as exc:
            raise CommandError(str(exc)) from exc
        self._follow(job, target, here=here, name=str(file or options["bucket"]))

    def _manifest_job(self, target, file, url_column, caption_column):
        with file.open("rb") as handle:
            return collection_job_create(
                project=target,
                manifest=File(handle, name=file.name),
                created_by=None,
                url_column=url_column,
                caption_column=caption_column,
            )

    def _follow(self, job, target, *, here: bool, name: str) -> None:
        url = reverse("import-job", kwargs={"slug": target.slug, "job_id": job.pk})
        if not here:
            self.stdout.write(f"Collection {job.pk} queued for the workers; progress: {url}")
            return
        job = collection_stage(job_id=job.pk)
        if job.status == ImportStatus.FAILED:
            raise CommandError(f"{name}: {job.error}")
        collection_run(job_id=job.pk, seconds=0)
        job.refresh_from_db()
        if job.status == ImportStatus.PAUSED and job.error:
            raise CommandError(f"{name}: {job.error}")  # the settings are wrong: nothing fetched
        progress = collection_progress(job=job)
        self.stdout.write(
            f"Rows: {progress.total}: {progress.fetched} fetched ({job.added} added, "
            f"{job.present} already present, {job.merged} merged), {progress.failed} failed."
        )
        for _code, label, count in progress.failures:
            self.stdout.write(f"  {label}: {count}")
        self._failed_rows(job)
        self.stdout.write(f"Every row's outcome: {url}")
        if progress.failed:
            # Like import_manifest and import_coco: a script sees that rows did not make it.
            raise SystemExit(1)

    def _failed_rows(self, job) -> None:
        """The first failed rows as ``row N: reason`` (the names the page and API use), then how
        many more there are."""
        refused = ImportRow.objects.filter(job=job, outcome=RowOutcome.REFUSED).order_by("position")
        for row in refused[:FAILED_ROWS_SHOWN]:
            self.stdout.write(f"  {row.where}: {row.reason}")
        more = refused.count() - FAILED_ROWS_SHOWN
        if more > 0:
            self.stdout.write(f"  … and {more} more")
