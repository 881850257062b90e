from django.core.management.base import BaseCommand, CommandError

from datasets.models import Project
from training.negatives.services.mining import mining_run


class Command(BaseCommand):
    help = (
        "Propose negatives for a project's images (random, model-mined with the promoted model, "
        "text edits; within the project's quotas) and bundle them into challenge items."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("--seed", type=int, default=None, help="fix the random choices")
        parser.add_argument(
            "--no-model", action="store_true", help="skip model mining (random and edits only)"
        )

    def handle(self, *args, project: str, seed: int | None, no_model: bool, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        try:
            result = mining_run(project=target, seed=seed, model=not no_model)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        counts = result.proposals
        self.stdout.write(
            f"Proposed {counts.total}: {counts.random} random, {counts.model} model-mined, "
            f"{counts.text_edit} text edits; {result.challenges} new challenge items."
        )
