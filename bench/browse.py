"""Data browser benchmark: every filter and sort of the pair list on a million pairs (PostgreSQL).

    .venv/bin/python bench/browse.py [--pairs 1000000] [--runs 15] [--page 50]
                                     [--db NAME] [--keep] [--reuse]
                                     [--pg postgres://postgres@127.0.0.1:5432]

Creates a throwaway database (concord_browse_<pid> unless --db names one; dropped at the end
unless --keep), migrates it, and fills it with SQL (INSERT … SELECT over generate_series, no
Python per row): --pairs pairs on --pairs × 0.8 captions of --pairs / 5 images; of the pairs, 80%
are positives and 20% random or model-mined negatives with a model score; 60% have an aggregated
label row (agreed, disputed, pending, some waiting for a manager, some adjudicated); 30% were
judged by one of 20 annotators through a task, lease and judgment (1 task in 1,000 is a gold
item); 1% of images carry a quality flag, 2% sit in duplicate clusters; captions are six words from a 60-word vocabulary (plus a rare
word in 1 of 10,000), so a one-word search matches about a tenth of them. Then ANALYZE.

Each case runs the data browser's own selector (datasets.browse.selectors.pairs_page, the query
the page and the API run, 50 rows with their image, caption, label and proposal) --runs times on
its first page and --runs times on a page deep inside (the cursor of the row 10,000 rows into the
view, or half-way when fewer match: a real row, as a manager paging or a shared link has), and
prints p50/p95 in milliseconds per case, with "over" beside any p95 above the 200 ms goal. The
1-minute load average is printed before and after: other work on the machine shows in the figures.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLUG = "browse-bench"
GOAL_MS = 200.0
# How far into a view the "deep" page starts (rows): page 200 of 50.
DEEP = 10_000
ANNOTATORS = 20
WORDS = [
    "a",
    "the",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "brown",
    "small",
    "large",
    "old",
    "young",
    "man",
    "woman",
    "child",
    "dog",
    "cat",
    "horse",
    "bird",
    "car",
    "bus",
    "train",
    "bicycle",
    "street",
    "park",
    "beach",
    "table",
    "kitchen",
    "field",
    "river",
    "tree",
    "house",
    "sits",
    "stands",
    "runs",
    "walks",
    "plays",
    "holds",
    "looks",
    "waits",
    "rides",
    "eats",
    "sleeps",
    "near",
    "under",
    "beside",
    "on",
    "in",
    "with",
    "two",
    "three",
    "sunny",
    "snowy",
    "wooden",
    "tall",
    "short",
    "busy",
    "quiet",
    "bright",
    "dark",
]
RARE = "zebra"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="pairs to create")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per case and page")
    parser.add_argument("--page", type=int, default=50, help="rows per page (the page's 50)")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", help="database name (default concord_browse_<pid>)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="use the already seeded database --db (implies --keep)"
    )
    args = parser.parse_args()
    if args.reuse and not args.db:
        parser.error("--reuse needs --db")
    if args.pairs < 100:
        parser.error("--pairs is at least 100")
    db_name = args.db or f"concord_browse_{os.getpid()}"
    keep = args.keep or args.reuse
    env = dict(
        os.environ,
        DATABASE_URL=f"{args.pg}/{db_name}",
        SECRET_KEY="bench-only",
        DEBUG="0",
        LOG_LEVEL="WARNING",
    )
    try:
        if not args.reuse:
            _psql(args.pg, f"DROP DATABASE IF EXISTS {db_name}")
            _psql(args.pg, f"CREATE DATABASE {db_name}")
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
            )
        _django(env)
        if not args.reuse:
            started = time.perf_counter()
            _seed(pairs=args.pairs)
            print(f"seeded {args.pairs:,} pairs in {time.perf_counter() - started:.1f} s")
        _measure(runs=args.runs, page=args.page)
    finally:
        if not keep:
            from django.db import connections

            connections.close_all()
            _psql(args.pg, f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")


def _psql(pg: str, sql: str) -> None:
    subprocess.run(["psql", f"{pg}/postgres", "-q", "-c", sql], check=True)


def _django(env: dict) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _seed(*, pairs: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from datasets.models import Membership, Project, Role

    images = max(1, pairs // 5)
    captions = pairs * 4 // 5
    with transaction.atomic():
        manager = get_user_model().objects.create_user("bench-manager", password=None)
        project = Project.objects.create(name="Browse bench", slug=SLUG, created_by=manager)
        Membership.objects.create(project=project, user=manager, role=Role.MANAGER)
        annotators = [
            get_user_model().objects.create_user(f"annotator{n}", password=None)
            for n in range(ANNOTATORS)
        ]
        Membership.objects.bulk_create(
            Membership(project=project, user=user, role=Role.ANNOTATOR) for user in annotators
        )
    first_annotator = annotators[0].pk
    words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
    # h(i, k): a fixed pseudo-random integer in [0, 2^31) for row i and salt k.
    h = "(abs(hashint8(({i})::bigint * 7919 + {k})::bigint) % 2147483647)"

    def rnd(i: str, k: int, mod: int) -> str:
        return f"({h.format(i=i, k=k)} % {mod})"

    # 1 task in 1,000 is a gold item (about 300 on a million pairs).
    GOLD = rnd("{pair}", 22, 1000) + " = 0"
    caption_text = " || ' ' || ".join(f"({words})[1 + {rnd('c', k, len(WORDS))}]" for k in range(6))
    steps = [
        (
            "images",
            f"""
            INSERT INTO datasets_image (project_id, file, thumbnail, sha256, width, height,
                format, size_bytes, source, original_name, source_url, license_name,
                license_url, created_at)
            SELECT {project.pk}, 'bench/' || g || '.jpg', '', md5(g::text) || md5((g + 1)::text),
                640, 480, 'JPEG', 50000,
                (ARRAY['upload','zip','coco','manifest','api'])[1 + {rnd("g", 1, 5)}],
                'img-' || g || '.jpg', '',
                (ARRAY['','CC BY 4.0','CC BY-SA 4.0','CC0 1.0'])[1 + {rnd("g", 2, 4)}], '',
                now() - (g || ' seconds')::interval
            FROM generate_series(1, {images}) AS g
            """,
        ),
        (
            "captions",
            f"""
            WITH ids AS (SELECT min(id) AS lo FROM datasets_image WHERE project_id = {project.pk})
            INSERT INTO datasets_caption (image_id, text_raw, text, source, import_key, created_at)
            SELECT ids.lo + {rnd("c", 21, images)}, t.text, t.text,
                CASE WHEN c % 10 = 0 THEN 'annotator' ELSE 'coco' END, '', now()
            FROM ids, generate_series(0, {captions - 1}) AS c,
                LATERAL (SELECT {caption_text}
                    || CASE WHEN {rnd("c", 9, 10000)} = 0 THEN ' {RARE}' ELSE '' END
                    AS text) AS t
            """,
        ),
        (
            "positive pairs",
            f"""
            INSERT INTO datasets_pair (image_id, caption_id, kind, label, confidence, split,
                excluded_from_releases, created_at)
            SELECT c.image_id, c.id, 'positive',
                CASE WHEN {rnd("c.id", 3, 10)} < 4 THEN NULL
                     WHEN {rnd("c.id", 4, 10)} < 8 THEN 1 ELSE 0 END,
                NULL,
                (ARRAY['','train','train','train','val','test'])[1 + {rnd("c.id", 5, 6)}],
                {rnd("c.id", 6, 1000)} = 0, now()
            FROM datasets_caption c JOIN datasets_image i ON i.id = c.image_id
            WHERE i.project_id = {project.pk}
            """,
        ),
        (
            "negative pairs",
            f"""
            WITH ids AS (SELECT min(id) AS lo FROM datasets_image WHERE project_id = {project.pk})
            INSERT INTO datasets_pair (image_id, caption_id, kind, label, confidence, split,
                excluded_from_releases, created_at)
            SELECT ids.lo + ((c.image_id - ids.lo + 1 + {rnd("c.id", 7, 50)}) % {images}), c.id,
                CASE WHEN (c.id / 4) % 2 = 0 THEN 'random_negative' ELSE 'hard_negative' END,
                CASE WHEN {rnd("c.id", 3, 10)} < 4 THEN NULL
                     WHEN {rnd("c.id", 4, 10)} < 8 THEN 0 ELSE 1 END,
                NULL, '', false, now()
            FROM ids, datasets_caption c JOIN datasets_image i ON i.id = c.image_id
            WHERE i.project_id = {project.pk} AND c.id % 4 = 0
            ON CONFLICT DO NOTHING
            """,
        ),
        (
            "confidence",
            f"""
            UPDATE datasets_pair SET confidence = 0.5 + {rnd("id", 8, 5000)} / 10000.0
            WHERE label IS NOT NULL
            """,
        ),
        (
            "label rows",
            f"""
            INSERT INTO annotate_itemlabel (project_id, pair_id, label, confidence, mv_label,
                mv_share, judgments, status, needs_manager, sent_to_manager, adjudicated_label,
                adjudicated_at, updated_at)
            SELECT {project.pk}, p.id, p.label, p.confidence, p.label,
                CASE WHEN p.label IS NULL THEN 0.5 ELSE 0.6 + {rnd("p.id", 10, 400)} / 1000.0 END,
                3,
                CASE WHEN p.label IS NOT NULL THEN 'agreed'
                     WHEN {rnd("p.id", 11, 3)} = 0 THEN 'pending' ELSE 'disputed' END,
                p.label IS NULL AND {rnd("p.id", 12, 5)} = 0,
                false,
                CASE WHEN {rnd("p.id", 13, 500)} = 0 THEN 1 END,
                CASE WHEN {rnd("p.id", 13, 500)} = 0 THEN now() END,
                now()
            FROM datasets_pair p WHERE {rnd("p.id", 14, 10)} < 6
            """,
        ),
        (
            "proposals",
            f"""
            INSERT INTO negatives_proposal (project_id, pair_id, source, score, rank, edit_type,
                outcome, created_at)
            SELECT {project.pk}, p.id,
                CASE WHEN p.kind = 'hard_negative' THEN 'model' ELSE 'random' END,
                {rnd("p.id", 15, 10000)} / 10000.0, NULL, '', 'pending', now()
            FROM datasets_pair p WHERE p.kind <> 'positive'
            """,
        ),
        (
            "tasks",
            f"""
            INSERT INTO annotate_task (project_id, kind, image_id, pair_id, target,
                judgment_count, lease_count, is_open, priority, random_key, is_gold,
                gold_answer, created_at)
            SELECT {project.pk}, 'verify', p.image_id, p.id, 3, 1, 0, true, 1,
                {rnd("p.id", 16, 2147483647)}, {GOLD.format(pair="p.id")},
                CASE WHEN {GOLD.format(pair="p.id")} THEN 'match' ELSE '' END, now()
            FROM datasets_pair p WHERE {rnd("p.id", 17, 10)} < 3
            """,
        ),
        (
            "leases",
            f"""
            INSERT INTO annotate_lease (task_id, project_id, annotator_id, state, created_at,
                shown_at, expires_at, holds_slot)
            SELECT t.id, {project.pk}, {first_annotator} + {rnd("t.id", 18, ANNOTATORS)},
                'submitted', now(), now(), now(), false
            FROM annotate_task t WHERE t.project_id = {project.pk}
            """,
        ),
        (
            "judgments",
            f"""
            INSERT INTO annotate_judgment (task_id, lease_id, annotator_id, answer,
                image_unusable, caption_offensive, seconds, created_at)
            SELECT l.task_id, l.id, l.annotator_id,
                CASE WHEN {rnd("l.id", 19, 2)} = 0 THEN 'match' ELSE 'no_match' END,
                false, false, 4.0, now()
            FROM annotate_lease l WHERE l.project_id = {project.pk}
            """,
        ),
        (
            "flags",
            f"""
            INSERT INTO datasets_imageflag (image_id, code, message, created_at)
            SELECT id, 'blank', 'Blank image', now() FROM datasets_image
            WHERE project_id = {project.pk} AND {rnd("id", 20, 100)} = 0
            """,
        ),
        (
            "clusters",
            f"""
            INSERT INTO datasets_duplicatecluster (project_id, canonical_id, size, doubt,
                confirmed, created_at)
            SELECT {project.pk}, id, 2, 3, false, now() FROM datasets_image
            WHERE project_id = {project.pk} AND id % 100 = 0
            """,
        ),
        (
            "cluster members",
            """
            INSERT INTO datasets_clustermember (cluster_id, image_id)
            SELECT id, canonical_id FROM datasets_duplicatecluster
            UNION ALL
            SELECT c.id, c.canonical_id + 1 FROM datasets_duplicatecluster c
            WHERE EXISTS (SELECT 1 FROM datasets_image i WHERE i.id = c.canonical_id + 1)
            """,
        ),
    ]
    with connection.cursor() as cursor:
        for name, sql in steps:
            started = time.perf_counter()
            with transaction.atomic():
                cursor.execute(sql)
                rows = cursor.rowcount
            print(f"  {name}: {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        cursor.execute("VACUUM ANALYZE")
        print(f"  vacuum analyze: {time.perf_counter() - started:.1f} s", flush=True)


CASES = [
    ("everything, newest first", {}),
    ("everything, oldest first", {"sort": "id"}),
    ("search one word", {"q": "dog"}),
    ("search two words", {"q": "black horse"}),
    ("search a phrase", {"q": '"black horse"'}),
    ("search a rare word", {"q": RARE}),
    ("label match", {"label": "match"}),
    ("label none", {"label": "none"}),
    ("status agreed", {"status": "agreed"}),
    ("status disputed", {"status": "disputed"}),
    ("status waiting", {"status": "waiting"}),
    ("status adjudicated", {"status": "adjudicated"}),
    ("status unjudged", {"status": "unjudged"}),
    ("confidence 0.5-0.6", {"confidence_min": "0.5", "confidence_max": "0.6"}),
    ("agreement ≤ 0.7", {"agreement_max": "0.7"}),
    ("flagged", {"flagged": "yes"}),
    ("duplicates", {"duplicate": "duplicate"}),
    ("canonical of a cluster", {"duplicate": "canonical"}),
    ("split val", {"split": "val"}),
    ("source manifest", {"source": "manifest"}),
    ("licence CC0 1.0", {"license": "CC0 1.0"}),
    ("8+ captions", {"captions_min": "8"}),
    ("annotator", {"annotator": "annotator7"}),
    ("kind hard negative", {"kind": "hard_negative"}),
    ("model score ≥ 0.9", {"score_min": "0.9"}),
    ("model disagrees", {"disagree": "yes"}),
    ("excluded from releases", {"excluded": "yes"}),
    ("gold", {"gold": "yes"}),
    ("not gold, sort confidence ↓", {"gold": "no", "sort": "-confidence"}),
    ("sort confidence ↑", {"sort": "confidence"}),
    ("sort confidence ↓", {"sort": "-confidence"}),
    ("sort agreement ↑", {"sort": "agreement"}),
    ("sort agreement ↓", {"sort": "-agreement"}),
    ("sort score ↓", {"sort": "-score"}),
    ("sort score ↑", {"sort": "score"}),
    (
        "label no_match, val, search, sort confidence ↓",
        {"label": "no_match", "split": "val", "q": "dog", "sort": "-confidence"},
    ),
    (
        "disputed, agreement ≤ 0.5, sort agreement ↑",
        {"status": "disputed", "agreement_max": "0.5", "sort": "agreement"},
    ),
]


def _measure(*, runs: int, page: int) -> None:
    from django.db import connection

    from datasets.browse import selectors
    from datasets.browse.filters import filter_parse
    from datasets.models import Project

    project = Project.objects.get(slug=SLUG)
    print(f"1-minute load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"{'case':48} {'rows':>5} {'first p50':>10} {'p95':>8} {'deep p50':>9} {'p95':>8}")
    worst = 0.0
    for name, params in CASES:
        spec = filter_parse(params)
        deep = filter_parse({**params, "cursor": _deep_cursor(project, spec).encode()})
        timings: dict[str, list[float]] = {"first": [], "deep": []}
        rows = 0
        for _ in range(runs):
            for key, current in (("first", spec), ("deep", deep)):
                started = time.perf_counter()
                result = selectors.pairs_page(project=project, spec=current, limit=page)
                timings[key].append((time.perf_counter() - started) * 1000)
                if key == "first":
                    rows = len(result.pairs)
        figures = [(_p(timings[k], 50), _p(timings[k], 95)) for k in ("first", "deep")]
        p95 = max(f[1] for f in figures)
        worst = max(worst, p95)
        flag = "  over" if p95 > GOAL_MS else ""
        print(
            f"{name:48} {rows:>5} {figures[0][0]:>8.1f}ms {figures[0][1]:>6.1f}ms"
            f" {figures[1][0]:>7.1f}ms {figures[1][1]:>6.1f}ms{flag}",
            flush=True,
        )
    connection.close()
    print(f"worst p95 {worst:.1f} ms (goal {GOAL_MS:.0f} ms)")
    print(f"1-minute load average after: {os.getloadavg()[0]:.2f}")


def _deep_cursor(project, spec):
    """The cursor of a real row DEEP rows into the view's order (or half-way, if fewer match):
    where a manager paging through it, or a link shared from there, would be."""
    from datasets.browse import selectors
    from datasets.browse.filters import Cursor

    queryset = selectors._sorted_after(
        selectors.pairs_filtered(project=project, spec=spec), sort=spec.sort, cursor=None
    )
    column = spec.sort.lstrip("-")
    fields = ["pk"] if column == "id" else ["sort_value", "sort_tie"]
    rows = list(queryset.values_list(*fields)[: DEEP + 1])
    if not rows:
        return Cursor(sort=spec.sort, value=None if column == "id" else 0.5, id=1)
    row = rows[min(len(rows) - 1, DEEP) if len(rows) > DEEP else len(rows) // 2]
    if column == "id":
        return Cursor(sort=spec.sort, value=None, id=row[0])
    return Cursor(sort=spec.sort, value=float(row[0]), id=row[1])


def _p(values: list[float], percent: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


if __name__ == "__main__":
    main()
