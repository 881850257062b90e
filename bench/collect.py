"""Collection benchmark: a URL manifest fetched from a loopback server into a project.

    .venv/bin/python bench/collect.py [--urls 10000] [--fail 0.01] [--processes 2]
        [--threads 16] [--batch N] [--rotated 0] [--pg postgres://postgres@127.0.0.1:5432]
        [--img2dataset VENV] [--db NAME] [--profile DIR]

Serves --urls distinct JPEGs of realistic sizes (320×240 to 1280×960, about 30–520 kB of noisy
pixels; each URL's bytes made unique by a few bytes after the image's end, which Concord's
checks cut off as they would any trailing data; --rotated of them carry an EXIF rotation, which
makes Concord decode, turn and encode them again) from a threaded HTTP server in its own process on 127.0.0.1, with --fail of
the URLs failing (404, an HTML page, a 503 that stays down, a body over the size cap). A
collection job over them runs in a throwaway PostgreSQL database (concord_bench_collect,
dropped and created) with --processes worker processes running the same service the Celery task
runs (claims, fetch, the full ingest checks, EXIF strip, dedup, one ImportRow per row), and
prints images/s, failures by reason, the workers' peak RSS and CPU seconds, the load average,
and lost or doubled rows (must be 0). --db names the throwaway database (to run beside another
benchmark); --profile DIR writes a cProfile file per worker process (main thread only).

With --img2dataset VENV, img2dataset is run on the same URL list with the same number of
processes, from that virtual environment (created with `pip install img2dataset==1.47.0` when
missing: never in the project's own environment), and its images/s is printed beside ours.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "concord_bench_collect"
IMG2DATASET = "img2dataset==1.47.0"
SIZES = [(320, 240), (512, 384), (640, 480), (800, 600), (1024, 768), (1280, 960)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--fail", type=float, default=0.01, help="share of URLs that fail")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--rotated",
        type=float,
        default=0.0,
        help="share of the JPEGs with an EXIF rotation (Concord encodes those again)",
    )
    parser.add_argument("--threads", type=int, default=16, help="fetch threads per process")
    parser.add_argument(
        "--batch", type=int, help="rows claimed and written at once (default: 2 × threads)"
    )
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--img2dataset", type=Path, help="virtual environment for img2dataset")
    parser.add_argument(
        "--db",
        default=DB_NAME,
        help="the throwaway database (dropped and created; default %(default)s)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="folder for a cProfile file per worker process (worker-N.prof); slows the run",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    scratch = Path(tempfile.mkdtemp(prefix="concord-bench-collect-"))
    manifest = scratch / "urls.csv"
    server = _serve(scratch, args)
    port = int(_wait_for(scratch / "port"))
    failing = _write_manifest(manifest, port=port, count=args.urls, fail=args.fail)
    print(f"{os.cpu_count()} CPUs; {args.urls:,} URLs, {failing:,} made to fail; server on {port}")

    batch = args.batch or args.threads * 2
    env = dict(
        os.environ,
        DATABASE_URL=f"{args.pg}/{args.db}",
        CELERY_BROKER_URL="memory://",
        SECRET_KEY="bench-only",
        DEBUG="0",
        LOG_LEVEL="WARNING",
        CONCORD_VAR_DIR=str(scratch / "var"),
        MEDIA_ROOT=str(scratch / "media"),
        CONCORD_COLLECT_ALLOW_CIDRS="127.0.0.0/8",
        CONCORD_COLLECT_PER_HOST=str(args.threads),
        CONCORD_COLLECT_PER_HOST_RATE="0",
        # Each worker holds up to two batches claimed (one written while the next is fetched):
        # a lower project limit leaves the second process idle while the first holds them all.
        CONCORD_COLLECT_PROJECT_CONCURRENCY=str(batch * 2 * args.processes),
        CONCORD_COLLECT_THREADS=str(args.threads),
        CONCORD_COLLECT_BATCH=str(batch),
        CONCORD_COLLECT_ATTEMPTS="2",
        CONCORD_COLLECT_BACKOFF="0.5",
        CONCORD_MAX_IMAGE_BYTES=str(2 * 1024 * 1024),
    )
    try:
        _psql(args.pg, f"DROP DATABASE IF EXISTS {args.db}")
        _psql(args.pg, f"CREATE DATABASE {args.db}")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        ours = _run_concord(manifest, env=env, processes=args.processes, profile=args.profile)
        theirs = None
        if args.img2dataset:
            theirs = _run_img2dataset(
                args.img2dataset, manifest, scratch, processes=args.processes, threads=args.threads
            )
        _report(ours, theirs, urls=args.urls)
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- the loopback server (its own process) -------------------------------------------------------


SERVER = r"""
import io, random, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from PIL import Image

folder, sizes, rotated = sys.argv[1], eval(sys.argv[2]), float(sys.argv[3])
rng = random.Random(7)
bases = []
for n in range(60):
    w, h = sizes[n % len(sizes)]
    # Noise over a gradient compresses like a photograph, not like a flat colour.
    img = Image.effect_noise((w, h), 40 + n).convert("RGB")
    img = Image.blend(img, Image.linear_gradient("L").resize((w, h)).convert("RGB"), 0.5)
    exif = Image.Exif()
    if n < 60 * rotated:  # a camera's photo held sideways: turned upright, so encoded again
        exif[0x0112] = 6
    out = io.BytesIO(); img.save(out, "JPEG", quality=85, exif=exif); bases.append(out.getvalue())
huge = bases[0] + b"\0" * (3 * 1024 * 1024)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, status, body, kind="image/jpeg"):
        self.send_response(status); self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        kind, _, rest = self.path.lstrip("/").partition("/")
        n = int(rest.split(".")[0])
        if kind == "i":  # unique bytes: the base JPEG, then the URL's number after its end
            return self.send(200, bases[n % len(bases)] + b"concord-bench-%d" % n)
        if kind == "missing": return self.send(404, b"not found", "text/plain")
        if kind == "page": return self.send(200, b"<html>no image</html>", "text/html")
        if kind == "down": return self.send(503, b"down", "text/plain")
        if kind == "huge": return self.send(200, huge)
        self.send(404, b"?", "text/plain")

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    def handle_error(self, request, client_address):
        pass  # a client that stops reading a body over its cap resets the connection

server = Server(("127.0.0.1", 0), H)
open(folder + "/port", "w").write(str(server.server_address[1]))
server.serve_forever()
"""


def _serve(scratch: Path, args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, str(scratch), repr(SIZES), str(args.rotated)]
    )


def _wait_for(path: Path, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            sys.exit("the loopback server did not start")
        time.sleep(0.1)
    return path.read_text()


def _write_manifest(path: Path, *, port: int, count: int, fail: float) -> int:
    rng = random.Random(11)
    failing = set(rng.sample(range(count), int(count * fail)))
    kinds = ["missing", "page", "down", "huge"]
    with path.open("w") as out:
        out.write("url,caption,key\n")
        for n in range(count):
            kind = kinds[n % len(kinds)] if n in failing else "i"
            out.write(f"http://127.0.0.1:{port}/{kind}/{n}.jpg,photo number {n},{n:08d}\n")
    return len(failing)


# --- Concord ---------------------------------------------------------------------------------------


WORKER = r"""
import os, resource, sys, django
sys.path.insert(0, sys.argv[2])
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from datasets.ingest.services.collection import collection_run
if sys.argv[3]:
    import cProfile
    cProfile.run("collection_run(job_id=int(sys.argv[1]), seconds=0)", sys.argv[3])
else:
    collection_run(job_id=int(sys.argv[1]), seconds=0)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""


def _run_concord(manifest: Path, *, env: dict, processes: int, profile: Path | None) -> dict:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.base import File
    from django.db.models import Count

    from datasets.ingest.services.collection import (
        collection_job_create,
        collection_progress,
        collection_stage,
    )
    from datasets.models import ImportJob, ImportRow
    from datasets.projects.services import project_create

    user = get_user_model().objects.create_user("bench", password="x")
    project = project_create(creator=user, name="Bench collection")
    with manifest.open("rb") as handle:
        job = collection_job_create(
            project=project, manifest=File(handle, name="urls.csv"), created_by=user
        )
    started = time.monotonic()
    job = collection_stage(job_id=job.pk)
    staged = time.monotonic() - started
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(job.pk),
                str(ROOT),
                str(profile / f"worker-{n}.prof") if profile else "",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    rss, cpu = [], []
    for worker in workers:
        out, _ = worker.communicate()
        last = out.strip().splitlines()[-1].split() if out.strip() else ["0", "0"]
        cpu.append(float(last[0]))
        rss.append(int(last[1]))
    elapsed = time.monotonic() - started
    job = ImportJob.objects.get(pk=job.pk)
    progress = collection_progress(job=job)
    doubled = (
        ImportRow.objects.filter(job=job)
        .values("position")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    rows = ImportRow.objects.filter(job=job).count()
    return {
        "status": job.status,
        "seconds": elapsed,
        "stage_seconds": staged,
        "fetched": progress.fetched,
        "failed": progress.failed,
        "failures": progress.failures,
        "images": job.images_added,
        "lost": (job.rows_total or 0) - rows,
        "doubled": doubled,
        "rss_kib": max(rss or [0]),
        "cpu_seconds": sum(cpu),
    }


# --- img2dataset (its own virtual environment) --------------------------------------------------


def _run_img2dataset(venv: Path, manifest: Path, scratch: Path, *, processes: int, threads: int):
    binary = venv / "bin" / "img2dataset"
    if not binary.exists():
        print(f"installing {IMG2DATASET} into {venv} (the bench's own environment)…")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", IMG2DATASET], check=True)
    out = scratch / "img2dataset"
    started = time.monotonic()
    result = subprocess.run(
        [
            str(binary),
            "--url_list",
            str(manifest),
            "--input_format",
            "csv",
            "--url_col",
            "url",
            "--caption_col",
            "caption",
            "--output_folder",
            str(out),
            "--output_format",
            "files",
            "--processes_count",
            str(processes),
            "--thread_count",
            str(threads),
            "--resize_mode",
            "no",
            "--retries",
            "1",
            "--enable_wandb",
            "False",
            "--disallowed_header_directives",
            "[]",
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        print(result.stderr[-2000:])
        return None
    successes = failures = 0
    import json

    for stats in out.glob("*_stats.json"):
        data = json.loads(stats.read_text())
        successes += data.get("successes", 0)
        failures += data.get("failed_to_download", 0) + data.get("failed_to_resize", 0)
    return {"seconds": elapsed, "fetched": successes, "failed": failures}


# --- output --------------------------------------------------------------------------------------


def _report(ours: dict, theirs: dict | None, *, urls: int) -> None:
    rate = ours["fetched"] / ours["seconds"] if ours["seconds"] else 0
    print(
        f"Concord: {ours['status']} in {ours['seconds']:.1f} s (manifest staged in "
        f"{ours['stage_seconds']:.1f} s): {ours['fetched']:,} fetched, {ours['failed']:,} failed, "
        f"{ours['images']:,} images added: {rate:.0f} images/s"
    )
    for _code, label, count in ours["failures"]:
        print(f"  {label}: {count}")
    print(f"  peak RSS of a worker process: {ours['rss_kib'] / 1024:.0f} MiB")
    per_image = ours["cpu_seconds"] * 1000 / max(1, ours["fetched"])
    print(
        f"  CPU of the worker processes: {ours['cpu_seconds']:.1f} s "
        f"({per_image:.1f} ms an image fetched; the machine's load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"  rows lost: {ours['lost']}, rows doubled: {ours['doubled']} (of {urls:,})")
    if theirs:
        their_rate = theirs["fetched"] / theirs["seconds"] if theirs["seconds"] else 0
        print(
            f"img2dataset: {theirs['seconds']:.1f} s: {theirs['fetched']:,} fetched, "
            f"{theirs['failed']:,} failed: {their_rate:.0f} images/s "
            f"(Concord at {rate / their_rate if their_rate else 0:.2f}× its rate)"
        )


def _psql(pg: str, sql: str) -> None:
    subprocess.run(["psql", f"{pg}/postgres", "-q", "-c", sql], check=True)


if __name__ == "__main__":
    main()
