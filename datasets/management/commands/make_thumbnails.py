from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from datasets.ingest.services.thumbnails import thumbnails_make
from datasets.models import Project

BATCH = 200


class Command(BaseCommand):
    help = "Make the thumbnails a project is missing (for imports made while no worker ran)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")

    def handle(self, *args, project: str, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        missing = list(target.images.filter(thumbnail="").values_list("pk", flat=True))
        made = 0
        with tqdm(total=len(missing), desc="Thumbnails", unit="img", disable=None) as bar:
            for start in range(0, len(missing), BATCH):
                batch = missing[start : start + BATCH]
                made += thumbnails_make(image_ids=batch)
                bar.update(len(batch))
        self.stdout.write(f"Made {made} thumbnails.")
