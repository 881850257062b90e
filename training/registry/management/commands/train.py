import json

from django.core.management.base import BaseCommand, CommandError

from datasets.models import Project, Release, ReleaseStatus
from training.registry.models import VersionStatus
from training.registry.services import model_request, model_train


class Command(BaseCommand):
    help = (
        "Train a model version of a project here, in this process (what a training worker does), "
        "evaluate it, promote it if it beats the promoted model, and print its metrics."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--release", help="release to train on, e.g. v3 (default: newest)")
        parser.add_argument(
            "--config", help="JSON object of TrainConfig fields, e.g. '{\"epochs\": 5}'"
        )

    def handle(self, *args, project: str, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        release = None
        if options["release"]:
            number = options["release"].lstrip("vV")
            if not number.isdigit():
                raise CommandError(f"Not a release version: {options['release']!r}.")
            release = Release.objects.filter(project=target, version=int(number)).first()
            if release is None or release.status != ReleaseStatus.READY:
                raise CommandError(f"Release {options['release']} is not a ready release.")
        try:
            config = json.loads(options["config"]) if options["config"] else None
            version = model_request(project=target, release=release, config=config, enqueue=False)
        except (ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc
        version = model_train(version_id=version.pk, show_progress=True)
        if version.status != VersionStatus.READY:
            raise CommandError(f"Model #{version.pk} failed: {version.error}")
        self.stdout.write(
            f"Model #{version.pk} on {version.release.name}: {version.metric_name} "
            f"{version.metric_value}{' (promoted)' if version.is_promoted else ''}"
        )
        self.stdout.write(f"Checkpoint: {version.checkpoint} in the models storage")
        for split, values in version.metrics.items():
            keys = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "f1", "ap")
            shown = " ".join(
                f"{key}={values[key]:.3f}" for key in keys if values.get(key) is not None
            )
            self.stdout.write(f"  {split}: {shown}")
