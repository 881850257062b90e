from pathlib import Path

from django.core.management.base import CommandError

from datasets.ingest.sources import SourceError, parse_coco
from datasets.management.commands._importing import ImportCommand
from datasets.models import Source


class Command(ImportCommand):
    help = "Import a COCO captions JSON file (images, captions, licences, original URLs)."
    source = Source.COCO

    def parse(self, path: Path):
        try:
            return parse_coco(path.read_bytes())
        except SourceError as exc:
            raise CommandError(f"{path}: {exc}") from exc
