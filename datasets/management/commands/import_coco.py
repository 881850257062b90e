from datasets.management.commands._importing import ImportCommand
from datasets.models import ImportKind


class Command(ImportCommand):
    help = (
        "Import a COCO captions JSON file (images, captions, licences, original URLs) with the "
        "images in a folder. Every image and annotation entry gets one outcome."
    )
    kind = ImportKind.COCO
