"""Ingest benchmark: Flickr8k-1k (1,000 images, 5,000 captions) through the import service.

    .venv/bin/python bench/ingest.py [--data ../shared/data/flickr8k-1k] [--keep]

Runs in a fresh temporary var folder (SQLite unless DATABASE_URL is set), imports once, then again
to time the idempotent re-import. Thumbnails are only enqueued (no worker runs), as the goal
excludes them. Prints images/s, captions/s and peak memory.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/flickr8k-1k")
    args = parser.parse_args()
    if not (args.data / "captions.csv").is_file():
        sys.exit(f"No sample data at {args.data}")

    var = tempfile.mkdtemp(prefix="concord-bench-")
    os.environ.update(CONCORD_VAR_DIR=var, DEBUG="1", LOG_LEVEL="WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from datasets.ingest.services.imports import records_import
    from datasets.ingest.sources import parse_manifest
    from datasets.projects.services import project_create

    if connection.vendor != "sqlite":
        sys.exit("Run against a throwaway database: unset DATABASE_URL (SQLite in a temp folder).")
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    project = project_create(creator=user, name=f"Bench {time.time():.0f}")

    records, problems = parse_manifest(args.data / "captions.csv")
    assert not problems, problems
    rss_before = _peak_rss_mb()
    print(f"database: {connection.vendor}; data: {args.data}")
    for label in ("first import", "re-import (idempotent)"):
        started = time.perf_counter()
        summary = records_import(
            project=project, records=records, images_dir=args.data / "images", source="manifest"
        )
        elapsed = time.perf_counter() - started
        images = summary.images_added + summary.images_existing
        captions = summary.captions_added + summary.captions_existing
        print(
            f"{label:<24} {elapsed:6.2f} s  {images / elapsed:7.1f} images/s  "
            f"{captions / elapsed:8.1f} captions/s  "
            f"(added {summary.images_added} images, {summary.captions_added} captions; "
            f"problems {len(summary.problems)})"
        )
    print(f"peak RSS {_peak_rss_mb():.0f} MB (process; {rss_before:.0f} MB before importing)")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
