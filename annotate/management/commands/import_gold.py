import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.queue.services.pool import GOLD_ANSWERS, gold_set
from datasets.models import Pair, Project


class Command(BaseCommand):
    help = "Mark pairs as gold items from a CSV with columns pair_id,answer (match or no_match)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project slug")
        parser.add_argument("file", type=Path)

    def handle(self, *args, project: str, file: Path, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with slug '{project}'.")
        try:
            rows = list(csv.DictReader(file.open(encoding="utf-8-sig", newline="")))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CommandError(f"{file}: {exc}") from exc
        if rows and not {"pair_id", "answer"} <= set(rows[0]):
            raise CommandError("The CSV needs the columns pair_id and answer.")
        pairs = Pair.objects.filter(image__project=target).select_related("image")
        problems, marked = [], 0
        for line, row in enumerate(rows, start=2):
            answer = (row.get("answer") or "").strip()
            pair_id = (row.get("pair_id") or "").strip()
            pair = pairs.filter(pk=int(pair_id)).first() if pair_id.isdigit() else None
            if pair is None:
                problems.append(f"line {line}: no pair {pair_id!r} in this project")
            elif answer not in GOLD_ANSWERS:
                problems.append(f"line {line}: answer must be match or no_match, not {answer!r}")
            else:
                gold_set(pair=pair, answer=answer)
                marked += 1
        for problem in problems:
            self.stderr.write(f"  {problem}")
        self.stdout.write(f"Gold items set: {marked}. Problems: {len(problems)}.")
        if problems:
            raise CommandError(f"{len(problems)} problem(s); the valid rows were applied.")
