"""Ingest benchmark: imports and uploads end to end, with the web under gunicorn and a real worker.

    .venv/bin/python bench/ingest.py [--data ../shared/data/flickr8k-1k] [--images 2000]
        [--pg postgres://postgres@127.0.0.1:5432] [--workers 4] [--threads 4] [--only-uploads]

Runs against a throwaway PostgreSQL database (concord_bench_ingest, dropped and created) with media
in a temporary folder, and prints, with the load average:

1. the terminal import of Flickr8k-1k (1,000 images, 5,000 captions) through the import job,
   then again (idempotent): images/s, captions/s, peak memory of this process;
2. a zip of --images JPEGs (Flickr8k-1k photos and mirrored copies of them) through the API
   end to end, with gunicorn as the README runs it and one Celery worker: the upload request's
   time, the job's images/s, the time to read every row's result back, and the web workers' peak
   RSS during the upload;
3. a manifest of 5 captions per image (10,000 rows for 2,000 images) with the same zip, through
   the import API: the job's rows/s and images/s;
4. hostile and bulky uploads (8 PNGs of 49 megapixels, a zip at the 10,000-file limit, a 1 GiB
   member in a 1 MB zip, 19 members of 100 MiB, 500 files in one request): status, request time
   and the web workers' peak RSS for each.
"""

import argparse
import http.client
import io
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "concord_bench_ingest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/flickr8k-1k")
    parser.add_argument("--images", type=int, default=2000, help="images in the uploaded zip")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--broker",
        default="redis://127.0.0.1:6379/14",
        help="a Redis database of the bench's own: what is left queued in it is purged at the end",
    )
    parser.add_argument(
        "--only-uploads",
        action="store_true",
        help="run part 4 alone (the hostile and bulky uploads), which needs no sample data",
    )
    args = parser.parse_args()
    if not args.only_uploads and not (args.data / "captions.csv").is_file():
        sys.exit(f"No sample data at {args.data}")

    scratch = Path(tempfile.mkdtemp(prefix="concord-bench-ingest-"))
    env = dict(
        os.environ,
        DATABASE_URL=f"{args.pg}/{DB_NAME}",
        CELERY_BROKER_URL=args.broker,
        SECRET_KEY="bench-only",
        DEBUG="0",
        # Plain HTTP on localhost: no redirect to HTTPS (the proxy's job in production).
        SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="WARNING",
        CONCORD_VAR_DIR=str(scratch / "var"),
        MEDIA_ROOT=str(scratch / "media"),
    )
    print(f"load average before: {_load()}; {os.cpu_count()} CPUs; data {args.data}")
    _psql(args.pg, f"DROP DATABASE IF EXISTS {DB_NAME}")
    _psql(args.pg, f"CREATE DATABASE {DB_NAME}")
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    try:
        if not args.only_uploads:
            _terminal_import(args.data)
        token, slugs = _accounts()
        if not args.only_uploads:
            photos = _photos(args.data, args.images, scratch)
            zip_path = scratch / "photos.zip"
            _write_zip(zip_path, photos)
            manifest = _manifest(args.data, photos)
        hostile = _hostile_uploads(scratch)
        with _servers(env, args, scratch, token) as server:
            if not args.only_uploads:
                _zip_through_the_api(server, token, slugs[0], zip_path, len(photos))
                _manifest_through_the_api(server, token, slugs[1], manifest, zip_path, len(photos))
            for label, files in hostile:
                _upload_only(server, token, slugs[2], label, files)
    finally:
        from django.db import connections

        from config.celery import app

        # The jobs left running (the 10,000-file zip) and their thumbnails leave messages behind.
        app.control.purge()
        connections.close_all()
        _psql(args.pg, f"DROP DATABASE IF EXISTS {DB_NAME}")
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average after: {_load()}")


# --- 1. the terminal import ----------------------------------------------------------------------


def _terminal_import(data: Path) -> None:
    from django.contrib.auth import get_user_model

    from datasets.ingest.services.jobs import import_job_run, terminal_import_create
    from datasets.projects.services import project_create

    user = get_user_model().objects.create_user("terminal")
    project = project_create(creator=user, name="Terminal import")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n1. Flickr8k-1k through the terminal import (import_manifest's job)")
    for label in ("first import", "re-import (idempotent)"):
        started = time.perf_counter()
        job = terminal_import_create(
            project=project,
            kind="manifest",
            source_file=data / "captions.csv",
            images_dir=data / "images",
        )
        job = import_job_run(job_id=job.pk, images_dir=data / "images")
        elapsed = time.perf_counter() - started
        images = len({row.image_id for row in job.rows.all()})
        print(
            f"   {label:<24} {elapsed:6.2f} s  {images / elapsed:7.1f} images/s  "
            f"{job.rows_done / elapsed:8.1f} captions/s  (added {job.images_added} images, "
            f"{job.captions_added} captions; refused {job.refused})"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"   peak RSS {peak:.0f} MB (this process; {rss_before:.0f} MB before importing)")


def _accounts() -> tuple[str, list[str]]:
    from django.contrib.auth import get_user_model

    from datasets.accounts.services import token_create
    from datasets.projects.services import project_create

    user = get_user_model().objects.create_user("bench-manager")
    slugs = [
        project_create(creator=user, name=name).slug
        for name in ("Zip upload", "Manifest import", "Hostile uploads")
    ]
    _row, secret = token_create(user=user, name="bench")  # knox: the secret is shown once
    return secret, slugs


# --- inputs --------------------------------------------------------------------------------------


def _photos(data: Path, count: int, scratch: Path) -> list[tuple[str, bytes]]:
    """Flickr photos, then mirrored copies of them (new bytes, same kind of content)."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    originals = sorted((data / "images").glob("*.jpg"))
    photos = [(path.name, path.read_bytes()) for path in originals[:count]]
    for path in originals:
        if len(photos) >= count:
            break
        with PILImage.open(path) as picture:
            buffer = io.BytesIO()
            ImageOps.mirror(picture.convert("RGB")).save(buffer, format="JPEG", quality=90)
        photos.append((f"mirrored-{path.name}", buffer.getvalue()))
    return photos


def _write_zip(path: Path, photos: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in photos:
            archive.writestr(f"photos/{name}", data)


def _manifest(data: Path, photos: list[tuple[str, bytes]]) -> bytes:
    import csv

    captions: dict[str, list[str]] = {}
    with (data / "captions.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            captions.setdefault(row["image"], []).append(row["caption"])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["image", "caption"])
    for name, _ in photos:
        original = name.removeprefix("mirrored-")
        for text in captions.get(original, ["a photograph"])[:5]:
            writer.writerow([name, text if name == original else f"{text} (mirrored)"])
    return buffer.getvalue().encode()


def _small_jpeg(seed: int) -> bytes:
    from PIL import Image as PILImage

    rng = random.Random(seed)
    picture = PILImage.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3)))
    picture.paste(tuple(rng.randrange(256) for _ in range(3)), (rng.randrange(50), 5, 60, 40))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _hostile_uploads(scratch: Path) -> list[tuple[str, list[tuple[str, Path]]]]:
    huge = scratch / "one-gib-member.zip"
    with (
        zipfile.ZipFile(huge, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("huge.jpg", "w", force_zip64=True) as member,
    ):
        chunk = bytes(2**20)
        for _ in range(1024):
            member.write(chunk)
    many = scratch / "nineteen-100mib-members.zip"
    with zipfile.ZipFile(many, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n in range(19):
            with archive.open(f"big-{n}.jpg", "w", force_zip64=True) as member:
                for _ in range(100):
                    member.write(bytes(2**20))
    files = []
    rng = random.Random(7)
    folder = scratch / "many-files"
    folder.mkdir()
    for n in range(500):
        path = folder / f"{n:03d}.jpg"
        path.write_bytes(rng.randbytes(200_000))
        files.append((path.name, path))
    limit = scratch / "ten-thousand-files.zip"
    with zipfile.ZipFile(limit, "w", compression=zipfile.ZIP_STORED) as archive:
        for n in range(10_000):
            archive.writestr(f"small/{n:05d}.jpg", _small_jpeg(n))
    # Few, small files with many pixels: 8 PNGs of 49 megapixels (a few hundred KB each, under
    # every count and byte limit) whose text chunk makes storing them a full re-encode.
    from PIL import Image as PILImage
    from PIL import ImageDraw, PngImagePlugin

    dense = []
    for n in range(8):
        picture = PILImage.new("L", (7000, 7000), 40 + n)
        ImageDraw.Draw(picture).rectangle((n * 500, n * 300, n * 500 + 2000, n * 300 + 900), 200)
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", f"bench {n}")
        path = scratch / f"dense-{n}.png"
        picture.save(path, format="PNG", pnginfo=info)
        dense.append((path.name, path))
    return [
        ("8 PNGs of 49 megapixels with a text chunk", dense),
        ("zip at the 10,000-file limit", [("ten-thousand.zip", limit)]),
        ("1 MB zip with one 1 GiB member", [("one-gib-member.zip", huge)]),
        ("zip of 19 members of 100 MiB", [("nineteen.zip", many)]),
        ("500 files of 200 KB in one request", files),
    ]


# --- 2-4. through the API ------------------------------------------------------------------------


class _Server:
    def __init__(self, port: int, gunicorn: subprocess.Popen):
        self.port, self.gunicorn = port, gunicorn

    def worker_pids(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.gunicorn.pid:
                pids.append(int(stat.parent.name))
        return pids


class _servers:
    """gunicorn as the README runs it, and one Celery worker, both stopped on exit."""

    def __init__(self, env: dict, args, scratch: Path, token: str):
        self.env, self.args, self.scratch, self.token = env, args, scratch, token

    def __enter__(self) -> _Server:
        bin_dir = Path(sys.executable).parent
        port = _free_port()
        self.gunicorn = subprocess.Popen(
            [
                str(bin_dir / "gunicorn"),
                "config.wsgi",
                "--workers",
                str(self.args.workers),
                "--threads",
                str(self.args.threads),
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
        )
        queue_log = (self.scratch / "worker.log").open("wb")
        self.worker = subprocess.Popen(
            [
                str(bin_dir / "celery"),
                "-A",
                "config",
                "worker",
                "-Q",
                "ingest,default",
                "--concurrency",
                "2",
                "-n",
                f"bench-{uuid.uuid4().hex[:6]}@%h",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=queue_log,
            stderr=subprocess.STDOUT,
        )
        _wait_for(port)
        server = _Server(port, self.gunicorn)
        # Workers import the app lazily: warm each process so its baseline is measured warm.
        for _ in range(self.args.workers * 2):
            _request(server, "GET", "/api/v1/projects/", token=self.token)
        return server

    def __exit__(self, *exc) -> None:
        for process in (self.gunicorn, self.worker):
            process.send_signal(signal.SIGTERM)
        for process in (self.gunicorn, self.worker):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _zip_through_the_api(server, token, slug, zip_path: Path, count: int) -> None:
    print(
        f"\n2. {count:,} JPEGs in one zip ({zip_path.stat().st_size / 2**20:.0f} MB) through the API"
    )
    status, job, seconds, rss = _upload(server, token, slug, [("photos.zip", zip_path)])
    print(f"   upload request: {status} in {seconds:.2f} s; {_rss_line(rss)}")
    job = _wait_done(server, token, job)
    _job_line(job)
    started = time.perf_counter()
    rows = _all_rows(server, token, job)
    outcomes = {}
    for row in rows:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    print(
        f"   results: {len(rows):,} rows read back in {time.perf_counter() - started:.2f} s: "
        f"{outcomes}; lost rows: {count - len(rows)}"
    )


def _manifest_through_the_api(server, token, slug, manifest: bytes, zip_path: Path, count: int):
    rows = manifest.count(b"\n") - 1
    print(f"\n3. a {rows:,}-row manifest with its {count:,} images (zip) through the import API")
    manifest_path = zip_path.parent / "captions.csv"
    manifest_path.write_bytes(manifest)
    status, job, seconds, rss = _upload(
        server,
        token,
        slug,
        [("captions.csv", manifest_path), ("images.zip", zip_path)],
        path=f"/api/v1/projects/{slug}/imports/",
        fields={"kind": "manifest"},
        names=("manifest", "images"),
    )
    print(f"   import request: {status} in {seconds:.2f} s; {_rss_line(rss)}")
    job = _wait_done(server, token, job)
    _job_line(job)
    print(f"   lost rows: {rows - job['rows_done']}")


def _upload_only(server, token, slug, label: str, files: list[tuple[str, Path]]) -> None:
    status, job, seconds, rss = _upload(server, token, slug, files)
    print(f"\n4. {label}: {status} in {seconds:.2f} s; {_rss_line(rss)}")
    if isinstance(job, dict) and "url" in job and label.startswith("zip at the"):
        while job["rows_total"] is None and job["status"] in ("queued", "running"):
            time.sleep(0.25)
            job = _request(server, "GET", job["url"], token=token)
        print(f"   job {job['status']} with {job['rows_total']:,} rows listed (left to run)")
    elif isinstance(job, dict) and "url" in job:
        job = _wait_done(server, token, job)
        reasons = {}
        for row in _all_rows(server, token, job):
            reasons[row["reason"][:60] or row["outcome"]] = (
                reasons.get(row["reason"][:60] or row["outcome"], 0) + 1
            )
        print(f"   job {job['status']} in {_job_seconds(job):.2f} s: {reasons}")


def _upload(server, token, slug, files, *, path=None, fields=None, names=None):
    """Stream a multipart body from disk; sample the web workers' RSS meanwhile."""
    path = path or f"/api/v1/projects/{slug}/images/"
    boundary = uuid.uuid4().hex
    parts: list[bytes | Path] = []
    for key, value in (fields or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        )
    for index, (name, file_path) in enumerate(files):
        field = names[index] if names else "files"
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        parts.append(file_path)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    length = sum(part.stat().st_size if isinstance(part, Path) else len(part) for part in parts)
    pids = server.worker_pids()
    baseline = max(_rss(pid, "VmHWM") for pid in pids)
    sampler = _Sampler(pids)
    sampler.start()
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    connection.putrequest("POST", path)
    connection.putheader("Authorization", f"Token {token}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    for part in parts:
        if isinstance(part, Path):
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    connection.send(chunk)
        else:
            connection.send(part)
    response = connection.getresponse()
    body = response.read()
    seconds = time.perf_counter() - started
    sampler.stop()
    peak = max(_rss(pid, "VmHWM") for pid in pids)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = body[:200]
    return response.status, payload, seconds, (baseline, sampler.peak, peak)


class _Sampler(threading.Thread):
    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids, self.peak, self.running = pids, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, *(_rss(pid, "VmRSS") for pid in self.pids))
            time.sleep(0.02)

    def stop(self) -> None:
        self.running = False
        self.join()


def _rss(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rss_line(rss: tuple[float, float, float]) -> str:
    baseline, sampled, peak = rss
    return (
        f"web workers' peak RSS {peak:.0f} MB (high-water mark; {baseline:.0f} MB before, "
        f"{sampled:.0f} MB sampled during the request)"
    )


def _wait_done(server, token, job: dict) -> dict:
    while job["status"] in ("queued", "running"):
        time.sleep(0.25)
        job = _request(server, "GET", job["url"], token=token)
    return job


def _job_seconds(job: dict) -> float:
    from django.utils.dateparse import parse_datetime

    return (parse_datetime(job["finished_at"]) - parse_datetime(job["started_at"])).total_seconds()


def _job_line(job: dict) -> None:
    seconds = _job_seconds(job)
    print(
        f"   job {job['status']}: {job['rows_done']:,} rows in {seconds:.1f} s = "
        f"{job['rows_done'] / seconds:.1f} rows/s, {job['images_added'] / seconds:.1f} images/s "
        f"({job['images_added']:,} images, {job['captions_added']:,} captions added; "
        f"counts {job['counts']})"
    )


def _all_rows(server, token, job: dict) -> list[dict]:
    rows, url = [], f"{job['rows_url']}?page_size=1000"
    while url:
        page = _request(server, "GET", url, token=token)
        rows += page["results"]
        url = page["next"]
    return rows


def _request(server, method: str, url: str, *, token: str | None) -> dict:
    if url.startswith("http"):
        url = "/" + url.split("/", 3)[3]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"Authorization": f"Token {token}"} if token else {}
    connection.request(method, url, headers=headers)
    response = connection.getresponse()
    body = response.read()
    return json.loads(body) if body and response.status < 500 else {}


def _psql(pg: str, sql: str) -> None:
    subprocess.run(["psql", f"{pg}/postgres", "-q", "-c", sql], check=True)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


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
