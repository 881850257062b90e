from datasets.management.commands._importing import ImportCommand
from datasets.models import ImportKind


class Command(ImportCommand):
    help = (
        "Import a CSV/TSV or JSONL manifest, one row per caption: image, caption, and optionally "
        "license, license_url and source_url. Every row gets one outcome."
    )
    kind = ImportKind.MANIFEST
