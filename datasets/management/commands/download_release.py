from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from datasets.models import Project, Release
from datasets.releases.services import ReleaseFilesError, release_download


class Command(BaseCommand):
    help = (
        "Copy every file of a ready release from storage into a local folder, each checked "
        "against the release's manifest (e.g. for `python -m training train FOLDER`)."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("release", help="release, e.g. v3")
        parser.add_argument("folder", help="local folder to copy the files into")

    def handle(self, *args, project: str, release: str, folder: str, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        number = release.lower().removeprefix("v")
        chosen = (
            Release.objects.filter(project=target, version=int(number)).first()
            if number.isdigit()
            else None
        )
        if chosen is None:
            raise CommandError(f"{target.slug} has no release {release}.")
        try:
            copied = release_download(release=chosen, target=Path(folder))
        except ReleaseFilesError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{target.slug} {chosen.name}: {len(copied)} files in {folder}, checked against "
            "the manifest."
        )
