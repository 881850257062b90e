"""Agreement that keeps up: simulated annotators at full speed while a worker recomputes.

    .venv/bin/python bench/recompute.py [--items 20000] [--annotators 50] [--minutes 1]
                                   [--judgments-per-item 3] [--delay 10] [--db NAME] [--keep]
                                   [--pg postgres://postgres@127.0.0.1:5432]

Creates a throwaway PostgreSQL database (concord_recompute_<pid> unless --db names one; dropped
unless --keep), seeds --items verification tasks (as bench/queue_load.py does), runs one full
recompute (a project that has been running has its item labels), starts one Celery worker on
the agreement queue and one on the default queue, and then --annotators threads that take and
answer tasks through the queue's services (assignment_get → judgment_submit, no think time) for
--minutes. Every judgment asks for a recompute (CONCORD_AGREEMENT_EVERY=1), as the app does.

Every second it samples the recompute requests waiting (JobLease.pending: at most 1 per project
is the promise), the messages on the broker's agreement and default queues, and the newest
agreement snapshot. It prints the samples every 10 s, then:

* label freshness: for each judgment, the seconds from its answer to the first sampled moment a
  snapshot covering it (last_judgment_id ≥ its id) existed — p50, p95, max (1 s resolution);
* recompute time per 1,000 changed items: the runs' seconds over the items they rewrote, all
  told and for the writing alone (a run first reads every judgment and fits Dawid–Skene);
* whether a default-queue probe task sent every 5 s ever waited more than 2 s (no other job
  waits behind recomputes).
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--judgments-per-item", type=int, default=3)
    parser.add_argument(
        "--delay", type=float, default=10.0, help="CONCORD_AGREEMENT_DELAY (seconds)"
    )
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", help="database name (default concord_recompute_<pid>)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    import queue_load  # the seeding and helpers of the queue benchmark

    db_name = args.db or f"concord_recompute_{os.getpid()}"
    var_dir = ROOT / "var" / "bench" / db_name
    var_dir.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        DATABASE_URL=f"{args.pg}/{db_name}",
        SECRET_KEY="bench-only",
        DEBUG="0",
        LOG_LEVEL="WARNING",
        CONCORD_VAR_DIR=str(var_dir),
        CELERY_BROKER_URL="filesystem://localhost/",
        CONCORD_AGREEMENT_EVERY="1",
        CONCORD_AGREEMENT_DELAY=str(args.delay),
    )
    processes: list[subprocess.Popen] = []
    try:
        queue_load._psql(args.pg, f"DROP DATABASE IF EXISTS {db_name}")
        queue_load._psql(args.pg, f"CREATE DATABASE {db_name}")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )
        started = time.perf_counter()
        queue_load._seed(
            env=env,
            items=args.items,
            annotators=args.annotators,
            judgments_per_item=args.judgments_per_item,
        )
        print(f"seeded {args.items:,} items in {time.perf_counter() - started:.1f} s")
        project_id, _ = queue_load._project(env=env)
        started = time.perf_counter()
        queue_load._recompute(project_id)
        print(f"first recompute (labels for every item) {time.perf_counter() - started:.1f} s")
        for queue in ("agreement", "default"):
            processes.append(
                subprocess.Popen(
                    [
                        *(str(Path(sys.executable).parent / "celery"), "--quiet", "-A", "config"),
                        *("worker", "-Q", queue, "--concurrency=1", "--loglevel=WARNING"),
                        f"--hostname=bench-{queue}-{db_name}@%h",
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
        time.sleep(5)  # the workers connect
        figures = _run(project_id=project_id, annotators=args.annotators, minutes=args.minutes)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
    try:
        _report(figures=figures, args=args)
    finally:
        queue_load._close_connections()
        if not args.keep:
            queue_load._psql(args.pg, f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
            shutil.rmtree(var_dir, ignore_errors=True)


def _answer(caption: str) -> str:
    return "match" if zlib.crc32(caption.encode()) % 2 else "no_match"


def _run(*, project_id: int, annotators: int, minutes: float) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Max

    from annotate.models import AgreementSnapshot, Judgment
    from annotate.queue.services.judgments import judgment_submit
    from annotate.queue.services.leases import assignment_get
    from config.celery import app
    from datasets.models import JobLease, Project

    project = Project.objects.get(pk=project_id)
    users = list(
        get_user_model()
        .objects.filter(username__startswith="bench-annotator-")
        .order_by("username")[:annotators]
    )
    first_judgment = (Judgment.objects.aggregate(last=Max("id"))["last"] or 0) + 1
    started = time.monotonic()
    deadline = started + minutes * 60
    stop = threading.Event()
    answers = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def annotate(user) -> None:
        from django.db import connection as own

        done = 0
        try:
            while time.monotonic() < deadline:
                lease = assignment_get(project=project, annotator=user, lookahead=0).current
                if lease is None:
                    break
                caption = lease.task.pair.caption.text if lease.task.pair_id else ""
                judgment_submit(lease=lease, answer=_answer(caption))
                done += 1
        except Exception as error:  # reported, not hidden
            with lock:
                errors.append(f"{type(error).__name__}: {error}")
        finally:
            own.close()
            with lock:
                answers[0] += done

    samples = []  # (seconds, waiting requests, agreement msgs, default msgs, snapshot cover)
    covered = []  # (seconds, last_judgment_id) when a snapshot was first seen
    probes = []  # seconds a default-queue probe waited
    runs = []  # (seconds, items rewritten, seconds reading) of each finished recompute run

    def queue_size(name: str) -> int:
        with app.connection_for_write() as broker:
            channel = broker.default_channel
            return channel.queue_declare(name, passive=False, durable=True).message_count

    def sample() -> None:
        from django.db import connection as own

        last_seen = 0
        finished = None
        while not stop.is_set():
            run = (
                JobLease.objects.filter(name="agreement.recompute", key=str(project_id))
                .values_list("finished_at", "progress")
                .first()
            )
            if run and run[0] and run[0] != finished and run[1].get("seconds") is not None:
                finished = run[0]
                runs.append(
                    (
                        float(run[1]["seconds"]),
                        int(run[1].get("written") or 0),
                        float(run[1].get("read_seconds") or 0.0),
                    )
                )
            now = time.monotonic() - started
            last = (
                AgreementSnapshot.objects.filter(project_id=project_id).aggregate(
                    last=Max("last_judgment_id")
                )["last"]
                or 0
            )
            if last > last_seen:
                covered.append((now, last))
                last_seen = last
            waiting = JobLease.objects.filter(name="agreement.recompute", pending=True).count()
            samples.append((now, waiting, queue_size("agreement"), queue_size("default"), last))
            time.sleep(max(0.0, 1 - (time.monotonic() - started - now)))
        own.close()

    def probe() -> None:
        # A task on the default queue every 5 s (the periodic recompute_due: it only asks for
        # a recompute, coalesced with the waiting one): how long until a worker took it.
        while not stop.is_set():
            sent = time.monotonic()
            app.signature("agreement.recompute_due").apply_async(queue="default")
            while queue_size("default") and time.monotonic() - sent < 30:
                time.sleep(0.05)
            probes.append(time.monotonic() - sent)
            stop.wait(5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    prober = threading.Thread(target=probe)
    prober.start()
    threads = [threading.Thread(target=annotate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = time.monotonic() - started
    last_judgment = Judgment.objects.aggregate(last=Max("id"))["last"] or 0
    # Wait for the labels to catch up with the last vote (at most 5 minutes).
    while time.monotonic() - started < ended + 300:
        if covered and covered[-1][1] >= last_judgment:
            break
        time.sleep(0.5)
    stop.set()
    sampler.join()
    prober.join()
    judged = list(Judgment.objects.filter(id__gte=first_judgment).values_list("id", "created_at"))
    lease = JobLease.objects.filter(name="agreement.recompute", key=str(project_id)).first()
    connection.close()
    return {
        "answers": answers[0],
        "errors": errors,
        "seconds": ended,
        "samples": samples,
        "covered": covered,
        "judged": judged,
        "started_wall": time.time() - (time.monotonic() - started),
        "probes": probes,
        "lease": lease,
        "runs": runs,
    }


def _report(*, figures: dict, args) -> None:
    print(
        f"{args.annotators} annotators for {figures['seconds']:.0f} s: {figures['answers']:,} "
        f"answers ({figures['answers'] / max(figures['seconds'], 1e-9):.1f}/s), "
        f"errors {len(figures['errors'])}"
    )
    for error in figures["errors"][:5]:
        print("  error:", error)
    print("   t(s)  waiting  agreement-msgs  default-msgs  snapshot-covers-judgment")
    for index, (at, waiting, agreement, default, last) in enumerate(figures["samples"]):
        if index % 10 == 0:
            print(f"{at:7.0f}  {waiting:7d}  {agreement:14d}  {default:12d}  {last:>10}")
    worst = max((s[1] for s in figures["samples"]), default=0)
    print(f"most recompute requests waiting at once: {worst}")
    covered = figures["covered"]
    start = figures["started_wall"]
    fresh = []
    for judgment_id, created in figures["judged"]:
        at = created.timestamp() - start
        seen = next((t for t, last in covered if last >= judgment_id), None)
        fresh.append(float("inf") if seen is None else max(0.0, seen - at))
    if fresh:
        cuts = statistics.quantiles(fresh, n=100, method="inclusive") if len(fresh) > 1 else fresh
        p50 = cuts[49] if len(fresh) > 1 else fresh[0]
        p95 = cuts[94] if len(fresh) > 1 else fresh[0]
        print(
            f"label freshness (answer → snapshot covering it): p50 {p50:.1f} s, "
            f"p95 {p95:.1f} s, max {max(fresh):.1f} s over {len(fresh):,} judgments"
        )
    lease = figures["lease"]
    runs = figures["runs"]
    if lease is not None:
        print(f"recompute runs {lease.runs} (sampled {len(runs)}); error: {lease.error or 'none'}")
    if runs:
        seconds = sum(s for s, _, _ in runs)
        written = sum(w for _, w, _ in runs)
        reading = sum(r for _, _, r in runs)
        per = f"{seconds / written * 1000:.2f} s" if written else "n/a"
        per_write = f"{(seconds - reading) / written * 1000:.2f} s" if written else "n/a"
        print(
            f"recompute: median run {statistics.median(s for s, _, _ in runs):.2f} s, max "
            f"{max(s for s, _, _ in runs):.2f} s; {written:,} items rewritten in {seconds:.1f} s "
            f"of which {reading:.1f} s reading every judgment and fitting Dawid–Skene: "
            f"{per} per 1,000 changed items all told, {per_write} for the writing alone"
        )
    probes = figures["probes"]
    if probes:
        print(
            f"default-queue probe waited: median {statistics.median(probes):.2f} s, "
            f"max {max(probes):.2f} s over {len(probes)} probes"
        )
    print(
        f"items {args.items:,}, {args.judgments_per_item} judgments per item, delay {args.delay} s"
    )


if __name__ == "__main__":
    main()
