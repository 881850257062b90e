from django.core.management.base import BaseCommand
from tqdm import tqdm

from datasets.demo.services import DEMO_ACCOUNTS, DEMO_SLUG, demo_exists, demo_project_seed


class Command(BaseCommand):
    help = "Create the demo accounts and a project of synthetic shape scenes with true captions."

    def add_arguments(self, parser):
        parser.add_argument("--images", type=int, default=120, help="how many scenes (default 120)")
        parser.add_argument("--seed", type=int, default=0, help="random seed for the scenes")
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing if the demo project already exists"
        )

    def handle(self, *args, images: int, seed: int, if_empty: bool, **options):
        if if_empty and demo_exists():
            self.stdout.write(f"Demo project '{DEMO_SLUG}' already exists; nothing to do.")
        else:
            with tqdm(total=images, desc="Demo scenes", unit="img", disable=None) as bar:
                project = demo_project_seed(images=images, seed=seed, on_image=bar.update)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo project '{project.slug}': {project.images.count()} images."
                )
            )
        self.stdout.write("Demo accounts (local use only):")
        for account in DEMO_ACCOUNTS:
            self.stdout.write(f"  {account.role:<10} {account.username} / {account.password}")
