"""What import_coco and import_manifest share: finding the project, the progress bar, the summary."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from datasets.ingest.services.imports import ImportSummary, records_import
from datasets.ingest.sources import ImportRecord, Problem
from datasets.models import Project

MAX_PROBLEMS_SHOWN = 50


class ImportCommand(BaseCommand):
    source: str

    def add_arguments(self, parser):
        parser.add_argument("project", help="slug of the project to import into")
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--images", type=Path, required=True, help="folder the image file names are relative to"
        )

    def parse(self, path: Path) -> tuple[list[ImportRecord], list[Problem]]:
        raise NotImplementedError

    def handle(self, *args, project: str, file: Path, images: Path, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        if not file.is_file():
            raise CommandError(f"{file} does not exist.")
        if not images.is_dir():
            raise CommandError(f"{images} is not a folder.")
        records, problems = self.parse(file)
        with tqdm(total=len(records), desc="Importing", unit="img", disable=None) as bar:
            summary = records_import(
                project=target,
                records=records,
                images_dir=images,
                source=self.source,
                on_record=bar.update,
            )
        summary.problems[:0] = problems
        self.report(summary)
        if summary.problems:
            raise CommandError(
                f"{len(summary.problems)} problem(s); the valid rows were imported.", returncode=1
            )

    def report(self, summary: ImportSummary) -> None:
        for problem in summary.problems[:MAX_PROBLEMS_SHOWN]:
            self.stderr.write(f"  {problem}")
        if len(summary.problems) > MAX_PROBLEMS_SHOWN:
            self.stderr.write(f"  … and {len(summary.problems) - MAX_PROBLEMS_SHOWN} more")
        self.stdout.write(
            f"Images: {summary.images_added} added, {summary.images_existing} already present. "
            f"Captions: {summary.captions_added} added, {summary.captions_existing} already present. "
            f"Problems: {len(summary.problems)}."
        )
        if not summary.added_anything and not summary.problems:
            self.stdout.write("Nothing new: everything in this file was already imported.")
