"""What import_coco and import_manifest share: finding the project, the job, the progress bar and
the summary. The import itself is the same job a browser or API import runs (services/jobs.py),
run here in this process because its images are on this machine's disk."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from tqdm import tqdm

from datasets.ingest.services.jobs import InputRefused, import_job_run, terminal_import_create
from datasets.ingest.sources import ENCODINGS
from datasets.models import ImportJob, ImportStatus, Project, RowOutcome

MAX_PROBLEMS_SHOWN = 50


class ImportCommand(BaseCommand):
    kind: str

    def add_arguments(self, parser):
        parser.add_argument("project", help="slug of the project to import into")
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--images", type=Path, required=True, help="folder the image file names are relative to"
        )
        parser.add_argument(
            "--encoding",
            choices=list(ENCODINGS),
            default="auto",
            help="the file's text encoding (default auto: byte-order mark, UTF-8, else detected)",
        )

    def handle(self, *args, project: str, file: Path, images: Path, encoding: str, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        if not file.is_file():
            raise CommandError(f"{file} does not exist.")
        if not images.is_dir():
            raise CommandError(f"{images} is not a folder.")
        try:
            job = terminal_import_create(
                project=target,
                kind=self.kind,
                source_file=file,
                images_dir=images,
                encoding=encoding,
            )
        except InputRefused as exc:
            raise CommandError(str(exc)) from exc
        with tqdm(desc="Importing", unit="row", disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            job = import_job_run(job_id=job.pk, images_dir=images, on_progress=progress)
        if job.status == ImportStatus.FAILED:
            raise CommandError(f"{file}: {job.error}")
        self.report(job)
        if job.refused:
            raise CommandError(
                f"{job.refused} row(s) refused; every other row was imported.", returncode=1
            )

    def report(self, job: ImportJob) -> None:
        for note in job.notes:
            self.stdout.write(note)
        refused = job.rows.filter(outcome=RowOutcome.REFUSED).order_by("position")
        for row in refused[:MAX_PROBLEMS_SHOWN]:
            named = f" ({row.name})" if row.name and row.name not in row.reason else ""
            self.stderr.write(f"  {row.where}{named}: {row.reason}")
        if job.refused > MAX_PROBLEMS_SHOWN:
            self.stderr.write(f"  … and {job.refused - MAX_PROBLEMS_SHOWN} more")
        self.stdout.write(
            f"Rows: {job.rows_done} read: {job.added} added, {job.present} already present, "
            f"{job.merged} merged, {job.refused} refused. "
            f"Images: {job.images_added} added. Captions: {job.captions_added} added."
        )
        url = reverse("import-job", kwargs={"slug": job.project.slug, "job_id": job.pk})
        self.stdout.write(f"Every row's outcome: {url}")
        if not (job.added or job.merged or job.refused):
            self.stdout.write("Nothing new: everything in this file was already imported.")
