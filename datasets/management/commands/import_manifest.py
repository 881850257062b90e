from pathlib import Path

from django.core.management.base import CommandError

from datasets.ingest.sources import SourceError, parse_manifest
from datasets.management.commands._importing import ImportCommand
from datasets.models import Source


class Command(ImportCommand):
    help = (
        "Import a CSV or JSONL manifest, one row per caption: image, caption, "
        "and optionally license and source_url."
    )
    source = Source.MANIFEST

    def parse(self, path: Path):
        try:
            return parse_manifest(path)
        except SourceError as exc:
            raise CommandError(f"{path}: {exc}") from exc
