"""Scale-out: the web side in the test process and Celery workers in processes of their own, each
in an empty temporary folder (its own ``var/``), sharing only PostgreSQL, Redis and an S3 server
(moto, started by the tests). Run with ``make test-scaleout`` (``pytest --scaleout``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from config.celery import app
from tests.s3 import new_bucket, s3_environment, s3_storages
from tests.training.core.synthetic import tiny_config

BOOT_SECONDS = 120
QUEUES = ("ingest", "default", "training", "agreement")
ERROR_SERVICES = (
    "The scale-out tests run on PostgreSQL and Redis (workers on other machines share nothing "
    "else): run them with `make test-scaleout`, or with DATABASE_URL=postgres://… and "
    "CELERY_BROKER_URL=redis://… set."
)


def database_url() -> str:
    """The URL of the test database this process uses, for the workers."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Worker:
    """A Celery worker process and the folder it runs in (its ``var/`` is ``folder/var``)."""

    name: str
    folder: Path
    process: subprocess.Popen

    @property
    def var(self) -> Path:
        return self.folder / "var"

    @property
    def log(self) -> Path:
        return self.folder / "worker.log"

    def alive(self) -> None:
        assert self.process.poll() is None, f"worker {self.name} died:\n{self.log_tail()}"

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def files(self) -> list[str]:
        """Every file under this worker's var/, relative to it."""
        return sorted(str(p.relative_to(self.var)) for p in self.var.rglob("*") if p.is_file())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def stack(transactional_db, settings, tmp_path):
    """The shared services: PostgreSQL, Redis (queues emptied) and a fresh S3 bucket that the
    web side (this process) uses for media, releases and models."""
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.fail(ERROR_SERVICES)
    bucket = new_bucket()
    settings.STORAGES = s3_storages(bucket)
    settings.DEBUG = False
    settings.CONCORD_SCRATCH_DIR = tmp_path / "web-scratch"
    train_config = tiny_config(tmp_path, epochs=2).to_dict()
    train_config["cache_dir"] = None  # each worker's own scratch folder
    settings.CONCORD_TRAIN_CONFIG = train_config
    with app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)
    return {"bucket": bucket, "train_config": train_config}


@pytest.fixture
def start_worker(stack, tmp_path) -> Iterator[Callable[[str, str], Worker]]:
    """Start a worker on ``queue`` in a new empty folder; all are stopped at the end."""
    started: list[Worker] = []

    def start(name: str, queue: str) -> Worker:
        folder = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}"
        (folder / "var").mkdir(parents=True)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CONCORD_", "AWS_", "MEDIA_ROOT", "DJANGO_"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "PYTHONPATH": str(settings.BASE_DIR),
                "DEBUG": "false",
                "SECRET_KEY": settings.SECRET_KEY,
                "DATABASE_URL": database_url(),
                "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
                "CELERY_TASK_ALWAYS_EAGER": "false",
                "CONCORD_VAR_DIR": str(folder / "var"),
                "CONCORD_TRAIN_CONFIG": json.dumps(stack["train_config"]),
                **s3_environment(stack["bucket"]),
            }
        )
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "-Q",
            queue,
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ]
        log = (folder / "worker.log").open("ab")
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        worker = Worker(name=name, folder=folder, process=process)
        started.append(worker)
        deadline = time.monotonic() + BOOT_SECONDS
        while "ready." not in worker.log.read_text(errors="replace"):
            worker.alive()
            assert time.monotonic() < deadline, f"{name} did not start:\n{worker.log_tail()}"
            time.sleep(0.2)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(
    what: str, condition: Callable[[], object], workers: list[Worker], timeout: float = 180
) -> object:
    """Poll ``condition`` until it is truthy, failing with the workers' logs if a worker dies
    or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for worker in workers:
            worker.alive()
        if time.monotonic() > deadline:
            logs = "\n\n".join(f"--- {w.name}\n{w.log_tail()}" for w in workers)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.25)


def wipe(worker: Worker) -> None:
    """Empty a worker's var/ while it runs: nothing it keeps there may be needed later."""
    for child in worker.var.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
