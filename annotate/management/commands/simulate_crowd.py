"""Drive the real queue with a simulated crowd and print how well aggregation recovers the truth."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.simulation.services import crowd_simulate
from datasets.models import Project


class Command(BaseCommand):
    help = (
        "Simulated annotators of known reliability (good, sloppy, spammers) answer the project's "
        "verification tasks through the real queue; prints majority-vote and Dawid–Skene "
        "accuracy against the known truth."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument("--annotators", type=int, default=20)
        parser.add_argument("--spammers", type=float, default=0.3, help="Fraction, 0 to 1")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--judgments-per-item", type=int, default=None)

    def handle(self, *args, **options) -> None:
        project = Project.objects.filter(slug=options["project_slug"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['project_slug']!r}.")
        if not 0 <= options["spammers"] <= 1:
            raise CommandError("--spammers is a fraction between 0 and 1.")
        if options["annotators"] < 1:
            raise CommandError("--annotators must be at least 1.")
        try:
            report = crowd_simulate(
                project=project,
                annotators=options["annotators"],
                spammer_fraction=options["spammers"],
                seed=options["seed"],
                judgments_per_item=options["judgments_per_item"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        out = self.stdout
        out.write(
            f"{report.annotators} annotators ({report.spammers} spammers), "
            f"{report.items} items with known truth, {report.judgments} judgments "
            f"in {report.rounds} rounds"
            + (
                f", {report.negatives_created} random negatives created"
                if report.negatives_created
                else ""
            )
        )
        out.write(f"Majority vote accuracy: {report.majority_vote_accuracy:.4f}")
        out.write(f"Dawid-Skene accuracy:   {report.dawid_skene_accuracy:.4f}")
