from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from datasets.models import Project, Release
from datasets.releases.services import release_prune, releases_prune, releases_to_prune


class Command(BaseCommand):
    help = (
        "Apply release retention: keep each project's newest CONCORD_RELEASES_KEEP ready "
        "releases and every pinned one, delete the stored files of the others (what beat does "
        "hourly). With --release vN, prune that one release of a project (e.g. one whose files "
        "were lost, so that the next build compares with the release before it)."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", nargs="?", help="project slug (default: every project)")
        parser.add_argument("--keep", type=int, help="ready releases kept per project")
        parser.add_argument("--release", help="prune this release, e.g. v3 (needs a project)")
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be pruned, delete nothing"
        )

    def handle(self, *args, project: str | None, keep: int | None, release: str | None, **options):
        target = None
        if project is not None:
            target = Project.objects.filter(slug=project).first()
            if target is None:
                raise CommandError(f"No project with slug '{project}'.")
        if release is not None:
            if target is None:
                raise CommandError("--release needs a project slug.")
            number = release.lower().removeprefix("v")
            chosen = (
                Release.objects.filter(project=target, version=int(number)).first()
                if number.isdigit()
                else None
            )
            if chosen is None:
                raise CommandError(f"{target.slug} has no release {release}.")
            if options["dry_run"]:
                self.stdout.write(f"Would prune {target.slug} {chosen.name}.")
                return
            try:
                outcome = release_prune(release=chosen)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"Pruned {outcome.project} {outcome.release}: {outcome.files} files deleted."
            )
            return
        keep = settings.CONCORD_RELEASES_KEEP if keep is None else keep
        if keep < 0:
            raise CommandError("--keep must be 0 (keep everything) or more.")
        if options["dry_run"]:
            projects = [target] if target else Project.objects.order_by("pk")
            listed = [
                f"{p.slug} {r.name}"
                for p in projects
                for r in releases_to_prune(project=p, keep=keep)
            ]
            self.stdout.write(
                f"Would prune {len(listed)} releases"
                + (": " + ", ".join(listed) if listed else ".")
            )
            return
        outcomes = releases_prune(project=target, keep=keep)
        for outcome in outcomes:
            self.stdout.write(
                f"Pruned {outcome.project} {outcome.release}: {outcome.files} files deleted."
            )
        kept = f"kept the newest {keep} ready releases per project" if keep else "retention off"
        self.stdout.write(f"{len(outcomes)} releases pruned ({kept}; pinned ones are kept).")
