"""Queue benchmark: concurrent annotators over HTTP against gunicorn on PostgreSQL or SQLite.

    .venv/bin/python bench/queue_load.py [--items 100000] [--annotators 16] [--seconds 30]
                                    [--think 0] [--judgments-per-item 3] [--recompute-every 1]
                                    [--workers 4] [--threads 4] [--db NAME] [--keep] [--reuse]
                                    [--pg postgres://postgres@127.0.0.1:5432] [--embedded]

--embedded runs the embedded default's shape instead: SQLite (WAL) in a folder of its own, the
filesystem broker, gunicorn with 2 workers of 8 threads and one Celery worker of concurrency 2 on
the default and agreement queues, as bin/run-embedded starts them. Run it once with
--recompute-every 0 (no worker) and once without, to compare the rate with recomputes firing
against the rate with the worker stopped.

Creates a throwaway database (concord_bench_<pid> unless --db names one; dropped at the end unless
--keep), bulk-inserts --items verification tasks with SQL, starts gunicorn on it and a Celery
worker that runs the consensus recompute the app enqueues every --recompute-every judgments (as
production does), then runs --annotators client threads, each looping POST tasks/next → POST
leases/{id}/submit through the REST API with token auth, for --seconds.

Every annotator gives each pair the same answer (a function of its caption), so no item is ever
disputed and no task should get more than --judgments-per-item hand-outs. Prints next-task
p50/p95/p99, submit p50/p95, judgments per second and, beside them, what must be 0:

* false 204s: "nothing to do" answers while the annotator still had a task they could take (an
  open task they never had, whose target nobody raised, so it was open for the whole request);
  the annotator goes on asking after one, as it would have been wrong to stop;
* extra hand-outs: leases and judgments beyond --judgments-per-item on any task, beside the
  judgments recomputes asked for beyond it in all (each a hand-out to come): nothing is disputed,
  so every one of them is a judgment nobody needed;
* over-assigned tasks and duplicate judgments.

It also prints how many recomputes ran (one is run before the clients start, so that every item
has its label row, as in a project that has been running) and the 1-minute load average before
and after (other work on the machine shows in the figures).

With --think 0 each annotator asks again the moment an answer is recorded: on a small machine
that measures queueing for the CPU that the clients, gunicorn, the worker and PostgreSQL share,
not how long one request takes. --think 1 (about a second per answer, still far quicker than a
person) gives the service at a realistic load. gunicorn runs 4 workers of 4 threads by default: on
2 cores that gave the shortest next-task tail at --think 1; 2 x 8 (more threads behind one
interpreter lock), 8 x 2 and 16 sync workers (a new connection per request) were slower.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLUG = "queue-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--judgments-per-item", type=int, default=3, help="the project's redundancy (default 3)"
    )
    parser.add_argument(
        "--recompute-every",
        type=int,
        default=1,
        help="every this many judgments ask for a (coalesced) recompute, run by a Celery worker "
        "on the agreement queue (0: no worker)",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="SQLite, filesystem broker and bin/run-embedded's process shape instead of PostgreSQL",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--db", help="database name (default concord_bench_<pid>, so runs never collide)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="use the already seeded database --db (implies --keep)"
    )
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds each annotator looks at a task before answering (0: back to back)",
    )
    args = parser.parse_args()
    if args.reuse and not args.db:
        parser.error("--reuse needs --db")
    if args.judgments_per_item < 1:
        parser.error("--judgments-per-item is at least 1")
    db_name = args.db or f"concord_bench_{os.getpid()}"
    keep = args.keep or args.reuse
    # A broker spool of its own: messages of another run never reach this run's worker.
    var_dir = ROOT / "var" / "bench" / db_name
    var_dir.mkdir(parents=True, exist_ok=True)
    if args.embedded:
        database_url = f"sqlite:///{var_dir / 'bench.sqlite3'}"
        if args.workers == 4 and args.threads == 4:  # the defaults: bin/run-embedded's instead
            args.workers, args.threads = 2, 8
    else:
        database_url = f"{args.pg}/{db_name}"
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        SECRET_KEY="bench-only",
        DEBUG="0",
        # gunicorn is spoken to over plain HTTP on the loopback.
        SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="WARNING",
        CONN_MAX_AGE="600",
        CONCORD_VAR_DIR=str(var_dir),
        CELERY_BROKER_URL="filesystem://localhost/",
        # 0 turns the enqueueing off too: a judgment id is never a multiple of a huge number.
        CONCORD_AGREEMENT_EVERY=str(args.recompute_every or 2**62),
    )
    python = sys.executable
    processes: list[subprocess.Popen] = []
    try:
        if not args.reuse:
            if args.embedded:
                (var_dir / "bench.sqlite3").unlink(missing_ok=True)
            else:
                _psql(args.pg, f"DROP DATABASE IF EXISTS {db_name}")
                _psql(args.pg, f"CREATE DATABASE {db_name}")
            subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            started = time.perf_counter()
            tokens = _seed(
                env=env,
                items=args.items,
                annotators=args.annotators,
                judgments_per_item=args.judgments_per_item,
            )
            print(f"seeded {args.items:,} items in {time.perf_counter() - started:.1f} s")
        else:
            tokens = _tokens(env=env)
        project_id, judgments_per_item = _project(env=env)
        if args.recompute_every and not _snapshots(project_id):
            # A running project has its item labels already; the first recompute writes a row
            # for every item, which is not what the ones during the run cost.
            started = time.perf_counter()
            _recompute(project_id)
            print(f"first recompute (labels for every item) {time.perf_counter() - started:.1f} s")
        port = _free_port()
        processes.append(
            subprocess.Popen(
                [
                    str(Path(python).parent / "gunicorn"),
                    "config.wsgi",
                    f"--workers={args.workers}",
                    f"--threads={args.threads}",
                    f"--bind=127.0.0.1:{port}",
                    "--log-level=warning",
                    # Annotators that think between requests keep their connection open meanwhile.
                    "--keep-alive=75",
                    "--preload",
                ],
                cwd=ROOT,
                env=env,
            )
        )
        if args.recompute_every:
            processes.append(
                subprocess.Popen(
                    [
                        str(Path(python).parent / "celery"),
                        "--quiet",
                        "-A",
                        "config",
                        "worker",
                        "-Q",
                        "default,agreement",
                        f"--concurrency={2 if args.embedded else 1}",
                        "--loglevel=WARNING",
                        f"--hostname=bench-{db_name}@%h",
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
        _wait_for(port)
        snapshots_before = _snapshots(project_id)
        load_before = os.getloadavg()[0]
        results = _run_clients(
            port=port,
            tokens=tokens[: args.annotators],
            seconds=args.seconds,
            think=args.think,
            project_id=project_id,
            judgments_per_item=judgments_per_item,
        )
        load_after = os.getloadavg()[0]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    try:
        # After the worker stopped: a recompute running at the end finished first.
        recomputes = _snapshots(project_id) - snapshots_before
        over, duplicates = _over_assignment()
        extra, raised = _extra_handouts(project_id=project_id, redundancy=judgments_per_item)
        disputed = _disputed(project_id)
        _report(results=results, seconds=args.seconds, annotators=args.annotators, items=args.items)
        print(
            f"false 204s {results['false_204']} (of {results['empty']} 204s)   "
            f"extra hand-outs {extra} (judgments asked for beyond the redundancy: {raised})"
        )
        print(f"think time {args.think:.1f} s per task; {judgments_per_item} judgments per item")
        print(
            f"recomputes {recomputes} during the run (one asked for every "
            f"{args.recompute_every} judgments; items any of them found disputed: {disputed})"
            if args.recompute_every
            else "recomputes off"
        )
        print(
            f"gunicorn {args.workers} workers x {args.threads} threads; 1-minute load average "
            f"{load_before:.2f} before, {load_after:.2f} after ({os.cpu_count()} CPUs)"
        )
        print(f"over-assigned tasks: {over}   duplicate judgments: {duplicates}")
        print(
            "database: SQLite (embedded: filesystem broker, bin/run-embedded's shape)"
            if args.embedded
            else "database: PostgreSQL"
        )
        if args.recompute_every:
            print(_recompute_figures(project_id))
    finally:
        _close_connections()
        if not keep:
            if not args.embedded:
                _psql(args.pg, f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
            shutil.rmtree(var_dir, ignore_errors=True)


def _psql(pg: str, sql: str) -> None:
    subprocess.run(["psql", f"{pg}/postgres", "-q", "-c", sql], check=True)


def _django(env: dict) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _close_connections() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def _seed(*, env: dict, items: int, annotators: int, judgments_per_item: int) -> list[str]:
    """Bulk-insert images, captions, pairs and verification tasks with generate_series."""
    _django(env)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from datasets.accounts.services import token_create
    from datasets.models import Membership
    from datasets.projects.services import project_create

    user_model = get_user_model()
    owner = user_model.objects.create_user("bench-owner")
    project = project_create(
        creator=owner,
        name="Queue bench",
        gold_rate=0.0,
        judgments_per_item=judgments_per_item,
        max_judgments_per_item=max(7, judgments_per_item),
    )
    images = max(1, items // 5)
    sqlite = connection.vendor == "sqlite"
    # g: 1..n, as PostgreSQL's generate_series or SQLite's recursive CTE gives it.
    series = (
        "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %s) "
        "SELECT g FROM s) AS series"
        if sqlite
        else "generate_series(1, %s) AS g"
    )
    digest = "lower(hex(randomblob(32)))" if sqlite else "md5(g::text) || md5((g + 1)::text)"
    now = "datetime('now')" if sqlite else "now()"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO datasets_image (project_id, file, thumbnail, sha256, width, height, format,
                size_bytes, source, original_name, source_url, license_name, license_url, created_at)
            SELECT %s, 'bench/' || g || '.jpg', '', {digest}, 224, 224,
                'JPEG', 1000, 'demo', g || '.jpg', '', '', '', {now}
            FROM {series}
            """,
            [project.pk, images],
        )
        cursor.execute(
            f"""
            INSERT INTO datasets_caption (image_id, text_raw, text, source, import_key, created_at)
            SELECT i.id, 'caption ' || (g - 1), 'caption ' || (g - 1), 'demo', '', {now}
            FROM {series}
            JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM datasets_image
                  WHERE project_id = %s) AS i ON i.n = (g - 1) %% %s
            """,
            [items, project.pk, images],
        )
        cursor.execute(
            f"""
            INSERT INTO datasets_pair (image_id, caption_id, kind, split, excluded_from_releases,
                created_at)
            SELECT c.image_id, c.id, 'positive', '', false, {now} FROM datasets_caption c
            JOIN datasets_image i ON i.id = c.image_id WHERE i.project_id = %s
            """,
            [project.pk],
        )
        random_key = (
            "abs(random()) %% 2147483647" if sqlite else "floor(random() * 2147483647)::int"
        )
        cursor.execute(
            f"""
            INSERT INTO annotate_task (project_id, kind, image_id, pair_id, target, judgment_count,
                lease_count, is_open, priority, random_key, is_gold, gold_answer, created_at)
            SELECT %s, 'verify', p.image_id, p.id, %s, 0, 0, true, 0,
                {random_key}, false, '', {now}
            FROM datasets_pair p JOIN datasets_image i ON i.id = p.image_id
            WHERE i.project_id = %s
            """,
            [project.pk, judgments_per_item, project.pk],
        )
        cursor.execute("ANALYZE")
    tokens = []
    for index in range(annotators):
        user = user_model.objects.create_user(f"bench-annotator-{index}")
        Membership.objects.create(project=project, user=user, role="annotator")
        tokens.append(token_create(user=user, name="queue bench")[1])
    return tokens


def _tokens(*, env: dict) -> list[str]:
    """Fresh tokens for the seeded annotators (only digests are stored, so old ones cannot be
    read back)."""
    _django(env)
    from django.contrib.auth import get_user_model

    from datasets.accounts.services import token_create, tokens_revoke_all

    tokens = []
    users = get_user_model().objects.filter(username__startswith="bench-annotator-")
    for user in users.order_by("username"):
        tokens_revoke_all(user=user)
        tokens.append(token_create(user=user, name="queue bench")[1])
    return tokens


def _project(*, env: dict) -> tuple[int, int]:
    from datasets.models import Project

    project = Project.objects.get(slug=SLUG)
    return project.pk, project.judgments_per_item


def _annotator_id(token: str) -> int:
    from knox.crypto import hash_token

    from datasets.models import ApiToken

    # Only a digest of a token is stored (django-rest-knox).
    return ApiToken.objects.get(digest=hash_token(token)).user_id


def _work_left(*, project_id: int, annotator_id: int, redundancy: int) -> bool:
    """Whether the annotator has a task they may take that was open all along: open now, never
    had a raised target, and nothing in this benchmark closes a task and opens it again (no skips,
    no expiry within the leases' ten minutes), so it was open for the whole request before."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXISTS (
                SELECT 1 FROM annotate_task t
                WHERE t.project_id = %(project)s AND t.is_open AND NOT t.is_gold
                    AND t.target = %(redundancy)s
                    AND (t.author_id IS NULL OR t.author_id <> %(annotator)s)
                    AND NOT EXISTS (
                        SELECT 1 FROM annotate_lease l
                        WHERE l.task_id = t.id AND l.annotator_id = %(annotator)s
                    )
            )
            """,
            {"project": project_id, "annotator": annotator_id, "redundancy": redundancy},
        )
        return cursor.fetchone()[0]


def _answer(caption: str | None) -> str:
    """Every annotator's answer for a pair: the same for everyone, so nothing is disputed."""
    return "match" if zlib.crc32((caption or "").encode()) % 2 else "no_match"


def _run_clients(
    *,
    port: int,
    tokens: list[str],
    seconds: float,
    think: float,
    project_id: int,
    judgments_per_item: int,
) -> dict:
    results: dict = {"next": [], "submit": [], "errors": [], "false_204": 0, "empty": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(len(tokens))
    next_url = f"/api/v1/projects/{SLUG}/tasks/next/"

    def annotate(token: str) -> None:
        from django.db import connection as database

        annotator_id = _annotator_id(token)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        rng = random.Random(token)
        nexts, submits, errors = [], [], []
        false_204 = empty = 0
        # Warm-up, not timed: the first requests of each worker build URL resolvers, schema
        # classes and database connections, and the first hand-out on a connection loads the
        # queue tables' catalog entries into its server process. A long-running server has done
        # all this long before; the figures are for that steady state.
        for _ in range(3):
            connection.request("GET", "/api/v1/projects/", headers=headers)
            connection.getresponse().read()
        connection.request("POST", next_url, headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status == 200:
            lease = json.loads(body)
            connection.request(
                "POST",
                f"/api/v1/leases/{lease['lease_id']}/submit/",
                body=json.dumps({"answer": _answer(lease["caption"])}),
                headers=headers,
            )
            connection.getresponse().read()
        barrier.wait()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            connection.request("POST", next_url, headers=headers)
            response = connection.getresponse()
            body = response.read()
            nexts.append(time.perf_counter() - started)
            if response.status == 204:
                empty += 1
                if _work_left(
                    project_id=project_id,
                    annotator_id=annotator_id,
                    redundancy=judgments_per_item,
                ):
                    false_204 += 1
                    continue  # a client that trusted it would have stopped here
                break
            if response.status != 200:
                errors.append(response.status)
                continue
            lease = json.loads(body)
            if think:
                time.sleep(rng.uniform(0.5 * think, 1.5 * think))
            answer = json.dumps({"answer": _answer(lease["caption"])})
            started = time.perf_counter()
            connection.request(
                "POST", f"/api/v1/leases/{lease['lease_id']}/submit/", body=answer, headers=headers
            )
            response = connection.getresponse()
            response.read()
            submits.append(time.perf_counter() - started)
            if response.status not in (200, 201):
                errors.append(response.status)
        database.close()
        with lock:
            results["next"].extend(nexts)
            results["submit"].extend(submits)
            results["errors"].extend(errors)
            results["false_204"] += false_204
            results["empty"] += empty

    threads = [threading.Thread(target=annotate, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _scalar(sql: str, params: list | None = None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()


def _recompute(project_id: int) -> None:
    from annotate.agreement.services.consensus import consensus_recompute
    from datasets.models import Project

    consensus_recompute(project=Project.objects.get(pk=project_id))


def _recompute_figures(project_id: int) -> str:
    """The recompute job's last run, as config.jobs recorded it."""
    from datasets.models import JobLease

    lease = JobLease.objects.filter(name="agreement.recompute", key=str(project_id)).first()
    if lease is None:
        return "recompute runs: none"
    progress = lease.progress or {}
    return (
        f"recompute runs {lease.runs}; the last took {progress.get('seconds', float('nan')):.2f} s "
        f"and rewrote {progress.get('written', 0)} items; error: {lease.error or 'none'}"
    )


def _snapshots(project_id: int) -> int:
    return _scalar(
        "SELECT count(*) FROM annotate_agreementsnapshot WHERE project_id = %s", [project_id]
    )[0]


def _disputed(project_id: int) -> int:
    """The most items any recompute found disputed (or waiting for a manager)."""
    return _scalar(
        "SELECT coalesce(max(items_disputed + items_waiting), 0) FROM annotate_agreementsnapshot "
        "WHERE project_id = %s",
        [project_id],
    )[0]


def _over_assignment() -> tuple[int, int]:
    over = _scalar(
        """
        SELECT count(*) FROM annotate_task t
        WHERE (SELECT count(*) FROM annotate_judgment j WHERE j.task_id = t.id)
            + (SELECT count(*) FROM annotate_lease l WHERE l.task_id = t.id AND l.holds_slot)
            > t.target AND NOT t.is_gold AND t.priority = 1
        """
    )[0]
    duplicates = _scalar(
        "SELECT count(*) FROM (SELECT task_id, annotator_id FROM annotate_judgment "
        "GROUP BY 1, 2 HAVING count(*) > 1) d"
    )[0]
    return over, duplicates


def _extra_handouts(*, project_id: int, redundancy: int) -> tuple[int, int]:
    """Judgments and slot-holding leases beyond the redundancy, summed over tasks (nothing is
    disputed here, so each is a hand-out nobody needed), and how far targets were raised above
    the redundancy in all (each raise a hand-out to come, had the annotators gone on)."""
    from django.db import connection

    # SQLite's two-argument max() is PostgreSQL's greatest().
    greatest = "max" if connection.vendor == "sqlite" else "greatest"
    extra, raised = _scalar(
        f"""
        SELECT coalesce(sum({greatest}(0, used - %(redundancy)s)), 0),
            coalesce(sum({greatest}(0, target - %(redundancy)s)), 0)
        FROM (
            SELECT t.target,
                (SELECT count(*) FROM annotate_judgment j WHERE j.task_id = t.id)
                + (SELECT count(*) FROM annotate_lease l WHERE l.task_id = t.id AND l.holds_slot)
                AS used
            FROM annotate_task t
            WHERE t.project_id = %(project)s AND NOT t.is_gold AND t.priority = 1
        ) AS started
        """,
        {"project": project_id, "redundancy": redundancy},
    )
    return int(extra), int(raised)


def _report(*, results: dict, seconds: float, annotators: int, items: int) -> None:
    def quantiles(values: list[float]) -> tuple[float, float, float]:
        if len(values) < 2:
            return (values[0] * 1000,) * 3 if values else (float("nan"),) * 3
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000

    n50, n95, n99 = quantiles(results["next"])
    s50, s95, _ = quantiles(results["submit"])
    print(f"{annotators} annotators, {items:,} items, {seconds:.0f} s")
    print(f"next-task  p50 {n50:6.1f} ms   p95 {n95:6.1f} ms   p99 {n99:6.1f} ms")
    print(f"submit     p50 {s50:6.1f} ms   p95 {s95:6.1f} ms")
    print(f"judgments/s {len(results['submit']) / seconds:.1f}   errors {len(results['errors'])}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


if __name__ == "__main__":
    main()
