"""Queue benchmark: concurrent annotators over HTTP against gunicorn on PostgreSQL.

    .venv/bin/python bench/queue_load.py [--items 100000] [--annotators 16] [--seconds 30]
                                    [--think 0] [--workers 4] [--threads 4] [--reuse]
                                    [--pg postgres://postgres@127.0.0.1:5432]

Creates a throwaway database (concord_bench), bulk-inserts --items verification tasks with SQL,
starts gunicorn on it, then runs --annotators client threads, each looping POST tasks/next →
POST leases/{id}/submit through the REST API with token auth, for --seconds. Prints next-task
p50/p95/p99, submit p50/p95, judgments per second, the over-assignment count (must be 0) and the
load average before and after (other work on the machine shows in the figures).

With --think 0 each annotator asks again the moment an answer is recorded: on a small machine
that measures queueing for the CPU that the clients, gunicorn and PostgreSQL share, not how long
one request takes. --think 1 (about a second per answer, still far quicker than a person) gives
the service at a realistic load. gunicorn runs 4 workers of 4 threads by default: on 2 cores that
gave the shortest next-task tail at --think 1; 2 x 8 (more threads behind one interpreter lock),
8 x 2 and 16 sync workers (a new connection per request) were slower.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "concord_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds each annotator looks at a task before answering (0: back to back)",
    )
    args = parser.parse_args()

    env = dict(
        os.environ,
        DATABASE_URL=f"{args.pg}/{DB_NAME}",
        SECRET_KEY="bench-only",
        DEBUG="0",
        # gunicorn is spoken to over plain HTTP on the loopback.
        SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="WARNING",
        CONN_MAX_AGE="600",
        CONCORD_VAR_DIR=str(ROOT / "var" / "bench"),
    )
    python = sys.executable
    if not args.reuse:
        _psql(args.pg, f"DROP DATABASE IF EXISTS {DB_NAME}")
        _psql(args.pg, f"CREATE DATABASE {DB_NAME}")
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        started = time.perf_counter()
        tokens = _seed(env=env, items=args.items, annotators=args.annotators)
        print(f"seeded {args.items:,} items in {time.perf_counter() - started:.1f} s")
    else:
        tokens = _tokens(env=env)
    port = _free_port()
    server = subprocess.Popen(
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
    try:
        _wait_for(port)
        load_before = os.getloadavg()[0]
        results = _run_clients(
            port=port, tokens=tokens[: args.annotators], seconds=args.seconds, think=args.think
        )
        load_after = os.getloadavg()[0]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    over, duplicates = _over_assignment(env=env)
    _report(results=results, seconds=args.seconds, annotators=args.annotators, items=args.items)
    print(f"think time {args.think:.1f} s per task")
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads; 1-minute load average "
        f"{load_before:.2f} before, {load_after:.2f} after ({os.cpu_count()} CPUs)"
    )
    print(f"over-assigned tasks: {over}   duplicate judgments: {duplicates}")


def _psql(pg: str, sql: str) -> None:
    subprocess.run(["psql", f"{pg}/postgres", "-q", "-c", sql], check=True)


def _django(env: dict) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _seed(*, env: dict, items: int, annotators: int) -> list[str]:
    """Bulk-insert images, captions, pairs and verification tasks with generate_series."""
    _django(env)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from datasets.accounts.services import token_create
    from datasets.models import Membership
    from datasets.projects.services import project_create

    user_model = get_user_model()
    owner = user_model.objects.create_user("bench-owner")
    project = project_create(creator=owner, name="Queue bench", gold_rate=0.0)
    images = max(1, items // 5)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO datasets_image (project_id, file, thumbnail, sha256, width, height, format,
                size_bytes, source, original_name, source_url, license_name, license_url, created_at)
            SELECT %s, 'bench/' || g || '.jpg', '', md5(g::text) || md5((g + 1)::text), 224, 224,
                'JPEG', 1000, 'demo', g || '.jpg', '', '', '', now()
            FROM generate_series(1, %s) AS g
            """,
            [project.pk, images],
        )
        cursor.execute(
            """
            INSERT INTO datasets_caption (image_id, text_raw, text, source, import_key, created_at)
            SELECT i.id, 'caption ' || g, 'caption ' || g, 'demo', '', now()
            FROM generate_series(0, %s - 1) AS g
            JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM datasets_image
                  WHERE project_id = %s) AS i ON i.n = g %% %s
            """,
            [items, project.pk, images],
        )
        cursor.execute(
            """
            INSERT INTO datasets_pair (image_id, caption_id, kind, split, created_at)
            SELECT c.image_id, c.id, 'positive', '', now() FROM datasets_caption c
            JOIN datasets_image i ON i.id = c.image_id WHERE i.project_id = %s
            """,
            [project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotate_task (project_id, kind, image_id, pair_id, target, judgment_count,
                lease_count, is_open, priority, random_key, is_gold, gold_answer, created_at)
            SELECT %s, 'verify', p.image_id, p.id, 3, 0, 0, true, 0,
                floor(random() * 2147483647)::int, false, '', now()
            FROM datasets_pair p JOIN datasets_image i ON i.id = p.image_id
            WHERE i.project_id = %s
            """,
            [project.pk, project.pk],
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


def _run_clients(
    *, port: int, tokens: list[str], seconds: float, think: float
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"next": [], "submit": [], "errors": []}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(len(tokens))

    def annotate(token: str) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        rng = random.Random(token)
        nexts, submits, errors = [], [], []
        # Warm-up, not timed: the first requests of each worker build URL resolvers, schema
        # classes and database connections, and the first hand-out on a connection loads the
        # queue tables' catalog entries into its server process. A long-running server has done
        # all this long before; the figures are for that steady state.
        for _ in range(3):
            connection.request("GET", "/api/v1/projects/", headers=headers)
            connection.getresponse().read()
        connection.request("POST", "/api/v1/projects/queue-bench/tasks/next/", headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status == 200:
            lease = json.loads(body)["lease_id"]
            connection.request(
                "POST",
                f"/api/v1/leases/{lease}/submit/",
                body='{"answer": "unsure"}',
                headers=headers,
            )
            connection.getresponse().read()
        barrier.wait()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            connection.request("POST", "/api/v1/projects/queue-bench/tasks/next/", headers=headers)
            response = connection.getresponse()
            body = response.read()
            nexts.append(time.perf_counter() - started)
            if response.status == 204:
                break
            if response.status != 200:
                errors.append(response.status)
                continue
            lease = json.loads(body)["lease_id"]
            if think:
                time.sleep(rng.uniform(0.5 * think, 1.5 * think))
            answer = json.dumps({"answer": rng.choice(["match", "no_match", "unsure"])})
            started = time.perf_counter()
            connection.request(
                "POST", f"/api/v1/leases/{lease}/submit/", body=answer, headers=headers
            )
            response = connection.getresponse()
            response.read()
            submits.append(time.perf_counter() - started)
            if response.status not in (200, 201):
                errors.append(response.status)
        with lock:
            results["next"].extend(nexts)
            results["submit"].extend(submits)
            results["errors"].extend(errors)

    threads = [threading.Thread(target=annotate, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _over_assignment(*, env: dict) -> tuple[int, int]:
    _django(env)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM annotate_task t
            WHERE (SELECT count(*) FROM annotate_judgment j WHERE j.task_id = t.id)
                + (SELECT count(*) FROM annotate_lease l WHERE l.task_id = t.id AND l.holds_slot)
                > t.target AND NOT t.is_gold AND t.priority = 1
            """
        )
        over = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM (SELECT task_id, annotator_id FROM annotate_judgment "
            "GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        duplicates = cursor.fetchone()[0]
    return over, duplicates


def _report(*, results: dict, seconds: float, annotators: int, items: int) -> None:
    def quantiles(values: list[float]) -> tuple[float, float, float]:
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
