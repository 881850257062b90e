from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from datasets.models import Project, ReleaseStatus
from datasets.releases.exporters import FORMATS
from datasets.releases.services import release_build, release_options, release_request


class Command(BaseCommand):
    help = (
        "Cut a release of a project and build it here, in this process, with a progress bar "
        "(what a worker does for the Releases page). Prints the version, counts and directory."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument(
            "--formats",
            nargs="+",
            choices=FORMATS,
            default=None,
            help="formats to write (default: all; Parquet is always written)",
        )
        parser.add_argument(
            "--copy-images",
            action="store_true",
            help="copy the images into the release under images/ (default: reference them by "
            "their name in the media storage); not with webdataset, whose shards already hold "
            "them, so without --formats it writes every other format",
        )
        parser.add_argument("--balance", choices=["none", "undersample", "oversample"])
        parser.add_argument("--ratio", type=float, help="target negatives per positive in train")
        parser.add_argument("--shard-samples", type=int, help="WebDataset samples per shard")

    def handle(self, *args, project: str, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        try:
            chosen = release_options(
                project=target,
                formats=options["formats"],
                copy_images=options["copy_images"],
                balance_method=options["balance"],
                balance_ratio=options["ratio"],
                shard_samples=options["shard_samples"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        release = release_request(project=target, user=None, options=chosen, enqueue=False)
        with tqdm(desc=f"{release.name}", unit="pair", disable=None) as bar:

            def progress(done: int, total: int, stage: str) -> None:
                bar.total = total
                bar.set_postfix_str(stage)
                bar.update(done - bar.n)

            release = release_build(release_id=release.pk, on_progress=progress)
        if release is None or release.status != ReleaseStatus.READY:
            raise CommandError(f"Release failed: {release.error if release else 'vanished'}")
        counts = release.counts
        splits = ", ".join(
            f"{split} {figures['pairs']:,} pairs / {figures['images']:,} images"
            for split, figures in counts["splits"].items()
        )
        sources = ", ".join(f"{k} {v:,}" for k, v in counts["label_sources"].items())
        self.stdout.write(
            f"{target.slug} {release.name}: {counts['pairs']:,} pairs, {counts['images']:,} "
            f"images ({splits}); labels: {sources}; {counts['moves']} images changed split.\n"
            f"Stored under {release.directory}/ in the releases storage."
        )
