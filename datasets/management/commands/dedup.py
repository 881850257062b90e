from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from datasets.curation.services.cleaning import project_clean
from datasets.models import Project


class Command(BaseCommand):
    help = (
        "Clean a project: hash the images still missing perceptual hashes, recluster near-"
        "duplicates (honouring managers' decisions) and flag low-quality images and captions. "
        "For imports made while no worker ran; safe to interrupt and run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")

    def handle(self, *args, project: str, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        missing = target.images.filter(hashed_at__isnull=True).count()
        with tqdm(total=missing, desc="Hashing", unit="img", disable=None) as bar:
            summary = project_clean(project=target, on_images=bar.update)
        clusters = summary.clusters
        self.stdout.write(
            f"Hashed {summary.images_hashed} images ({summary.images_already_hashed} already "
            f"hashed). Near-duplicates (pHash ≤ {target.near_duplicate_threshold} bits): "
            f"{clusters.clusters} cluster{'s' if clusters.clusters != 1 else ''}, "
            f"{clusters.duplicates} duplicate{'s' if clusters.duplicates != 1 else ''} held "
            f"back, {clusters.confirmed} confirmed. Quality: {summary.images_flagged} "
            f"image{'s' if summary.images_flagged != 1 else ''} flagged, "
            f"{summary.captions_flagged} caption{'s' if summary.captions_flagged != 1 else ''} "
            f"flagged ({summary.captions_duplicate} repeating another)."
        )
