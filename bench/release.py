"""Benchmark: a release of 1,000,000 pairs through the real service, on PostgreSQL.

    python bench/release.py [--pairs N] [--pg postgres://postgres@127.0.0.1:5432] [--reuse]

Creates a throwaway database (concord_release_bench), bulk-inserts synthetic images, captions,
pairs, aggregated labels and duplicate clusters with generate_series, then builds a release
(JSONL + Parquet, images referenced, not copied) with ``release_build`` in a fresh process and
prints the time of each stage and that process's peak resident memory (ru_maxrss).
Goal: under 120 s and under 500 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from anywhere: the repository root holds the project's packages.
_BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(_BENCH.parent))

import argparse
import os
import resource
import subprocess
import time

ROOT = _BENCH.parent
DB_NAME = "concord_release_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    parser.add_argument("--stage", choices=["seed", "build"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    env = dict(
        os.environ,
        DATABASE_URL=f"{args.pg}/{DB_NAME}",
        SECRET_KEY="bench-only",
        DEBUG="0",
        LOG_LEVEL="WARNING",
        CELERY_BROKER_URL="memory://",
        CONCORD_VAR_DIR=str(ROOT / "var" / "release-bench"),
    )
    if args.stage == "seed":
        return _seed(env=env, pairs=args.pairs)
    if args.stage == "build":
        return _build(env=env)
    python = sys.executable
    me = [python, str(Path(__file__).resolve()), "--pairs", str(args.pairs), "--pg", args.pg]
    if not args.reuse:
        _psql(args.pg, f"DROP DATABASE IF EXISTS {DB_NAME}")
        _psql(args.pg, f"CREATE DATABASE {DB_NAME}")
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        started = time.perf_counter()
        subprocess.run([*me, "--stage", "seed"], cwd=ROOT, env=env, check=True)
        print(f"seeded {args.pairs:,} pairs in {time.perf_counter() - started:.1f} s")
    subprocess.run([*me, "--stage", "build"], cwd=ROOT, env=env, check=True)


def _psql(pg: str, sql: str) -> None:
    subprocess.run(["psql", f"{pg}/postgres", "-q", "-c", sql], check=True)


def _django(env: dict) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _seed(*, env: dict, pairs: int) -> None:
    """Images with 4 captions each (positives) and one random negative per image."""
    _django(env)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from datasets.projects.services import project_create

    owner = get_user_model().objects.create_user("bench-owner")
    project = project_create(creator=owner, name="Release bench")
    project.trusted_sources = ["coco"]
    project.balance_method = "undersample"
    project.save()
    images = max(2, pairs // 5)
    sql = [
        (
            """INSERT INTO datasets_image (project_id, file, thumbnail, sha256, width, height,
                format, size_bytes, source, original_name, source_url, license_name, license_url,
                created_at)
            SELECT %(p)s, 'bench/' || g || '.jpg', '', md5(g::text) || md5((g + 1)::text), 224,
                224, 'JPEG', 1000, 'demo', g || '.jpg', '', 'CC BY 4.0',
                'https://creativecommons.org/licenses/by/4.0/', now()
            FROM generate_series(1, %(n)s) AS g"""
        ),
        (
            """INSERT INTO datasets_caption (image_id, text_raw, text, source, import_key,
                created_at)
            SELECT i.id, t, t, CASE WHEN k = 3 THEN 'coco' ELSE 'demo' END, '', now()
            FROM datasets_image i, generate_series(0, 3) AS k,
                LATERAL (SELECT 'A synthetic caption number ' || k || ' of image ' || i.id AS t) x
            WHERE i.project_id = %(p)s"""
        ),
        (
            """INSERT INTO datasets_pair (image_id, caption_id, kind, split,
                excluded_from_releases, created_at)
            SELECT image_id, id, 'positive', '', false, now() FROM datasets_caption c
            WHERE c.image_id IN (SELECT id FROM datasets_image WHERE project_id = %(p)s)"""
        ),
        (
            """INSERT INTO datasets_pair (image_id, caption_id, kind, split,
                excluded_from_releases, created_at)
            SELECT i.id, f.id, 'random_negative', '', false, now()
            FROM datasets_image i
            JOIN (SELECT DISTINCT ON (image_id) image_id, id FROM datasets_caption
                  ORDER BY image_id, id) AS f ON f.image_id = i.id + 1
            WHERE i.project_id = %(p)s"""
        ),
        (
            """INSERT INTO annotate_itemlabel (project_id, pair_id, label, confidence, judgments,
                status, needs_manager, sent_to_manager, updated_at)
            SELECT %(p)s, p.id, CASE WHEN p.kind = 'positive' THEN 1 ELSE 0 END, 0.9, 3,
                CASE WHEN p.id %% 10 = 0 THEN 'disputed' ELSE 'agreed' END, false, false, now()
            FROM datasets_pair p JOIN datasets_caption c ON c.id = p.caption_id
            WHERE p.image_id IN (SELECT id FROM datasets_image WHERE project_id = %(p)s)
              AND c.source = 'demo' AND p.id %% 3 <> 0"""
        ),
        (
            """INSERT INTO datasets_duplicatecluster (project_id, canonical_id, size, doubt,
                confirmed, created_at)
            SELECT %(p)s, id, 2, 3, false, now() FROM datasets_image
            WHERE project_id = %(p)s AND id %% 100 = 1"""
        ),
        (
            """INSERT INTO datasets_clustermember (cluster_id, image_id)
            SELECT c.id, c.canonical_id FROM datasets_duplicatecluster c
            WHERE c.project_id = %(p)s
            UNION ALL
            SELECT c.id, c.canonical_id + 1 FROM datasets_duplicatecluster c
            WHERE c.project_id = %(p)s"""
        ),
    ]
    with connection.cursor() as cursor:
        for statement in sql:
            cursor.execute(statement, {"p": project.pk, "n": images})
            # Fresh statistics, or the planner takes million-row tables for empty ones.
            cursor.execute("ANALYZE")
        cursor.execute(
            "SELECT count(*) FROM datasets_pair p JOIN datasets_image i ON i.id = p.image_id "
            "WHERE i.project_id = %s",
            [project.pk],
        )
        print(f"{cursor.fetchone()[0]:,} pairs over {images:,} images")


def _build(*, env: dict) -> None:
    _django(env)

    from datasets.models import Project
    from datasets.releases.services import (
        release_build,
        release_files,
        release_options,
        release_request,
    )

    project = Project.objects.get(slug="release-bench")
    options = release_options(project=project, formats=["jsonl", "parquet"], copy_images=False)
    release = release_request(project=project, user=None, options=options, enqueue=False)
    stages: dict[str, float] = {}
    state = {"stage": "reading labels", "since": time.perf_counter()}

    def progress(done: int, total: int, stage: str) -> None:
        if stage != state["stage"]:
            now = time.perf_counter()
            stages[state["stage"]] = stages.get(state["stage"], 0.0) + now - state["since"]
            state.update(stage=stage, since=now)

    started = time.perf_counter()
    release = release_build(release_id=release.pk, on_progress=progress)
    total = time.perf_counter() - started
    stages[state["stage"]] = time.perf_counter() - state["since"]
    if release.status != "ready":
        sys.exit(f"release failed: {release.error}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    files = {f["path"]: f["size"] for f in release_files(release=release)}
    print(
        f"release {release.name}: {release.counts['pairs']:,} pairs, "
        f"{release.counts['images']:,} images, labels {release.counts['label_sources']}"
    )
    print("stage                     seconds")
    names = {
        "reading labels": "snapshot: splits + query → spools",
        "writing files": "JSONL + Parquet (one pass)",
        "diff": "diff (reads pairs.parquet)",
        "manifest": "datasheet→manifest",
        "storing files": "store in the releases storage",
    }
    for stage, seconds in stages.items():
        print(f"{names.get(stage, stage):<34}{seconds:8.1f}")
    print(f"{'total':<34}{total:8.1f}")
    for name in ("pairs.jsonl", "pairs.parquet", "diff.jsonl"):
        print(f"{name:<34}{files[name] / 1e6:8.1f} MB")
    print(f"peak RSS (ru_maxrss of the build process): {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
