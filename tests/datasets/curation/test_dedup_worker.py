"""A real Celery worker process, killed with SIGKILL in the middle of a cleaning batch.

The next worker and the ``dedup`` command must finish the job: every image hashed once, every
image in exactly one cluster, the clusters those a clean run gives, nothing lost.
"""

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from datasets.curation.services.cleaning import images_clean
from datasets.curation.services.clusters import clusters_recompute
from datasets.curation.tasks import clean_images
from datasets.ingest.services.uploads import Provenance, image_ingest
from datasets.models import ClusterMember, DuplicateCluster, Image, Source
from tests import factories
from tests.datasets.curation.dedup_images import VARIANTS, picture

SEEDS = 12
PER_TASK = 12
BOOT_SECONDS = 60


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _worker(queue: str, media: Path, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CONCORD_VAR_DIR": str(settings.VAR_DIR),
        "MEDIA_ROOT": str(media),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
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
        f"{queue}-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "WARNING",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _hashed(project) -> int:
    return Image.objects.filter(project=project, hashed_at__isnull=False).count()


def _snapshot(project):
    return {
        (c.canonical_id, frozenset(m.image_id for m in c.members.all()))
        for c in DuplicateCluster.objects.filter(project=project).prefetch_related("members")
    }


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_leaves_nothing_lost_or_doubled(manager, media_storage, tmp_path):
    project = factories.project(manager=manager, name="Kill test")
    groups = []
    for seed in range(SEEDS):
        drawn = picture(seed=100 + seed)
        ids = []
        for kind, make in VARIANTS.items():
            result = image_ingest(
                project=project,
                data=make(drawn),
                provenance=Provenance(source=Source.UPLOAD, original_name=f"{seed}-{kind}.jpg"),
                make_thumbnail=False,  # this test sends its own messages, to its own queue
            )
            ids.append(result.image_id)
        groups.append(ids)
    # Interleave the groups so that every task touches several clusters.
    all_ids = [ids[k] for k in range(len(VARIANTS)) for ids in groups]
    total = len(all_ids)

    queue = f"dedup-kill-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    for start in range(0, total, PER_TASK):
        clean_images.apply_async(args=[all_ids[start : start + PER_TASK]], queue=queue)

    first = _worker(queue, media_storage, log)
    try:
        deadline = time.monotonic() + BOOT_SECONDS
        while _hashed(project) == 0:
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker did not start working"
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    done_at_kill = _hashed(project)
    assert 0 < done_at_kill < total, "the kill must land in the middle of the batch"

    # A new worker takes the messages still queued; the one in flight died with the worker
    # (the filesystem transport cannot hand it back, Redis only after its visibility timeout).
    second = _worker(queue, media_storage, log)
    try:
        deadline = time.monotonic() + BOOT_SECONDS
        last, stable_since = _hashed(project), time.monotonic()
        while _hashed(project) < total and time.monotonic() < deadline:
            now = _hashed(project)
            if now != last:
                last, stable_since = now, time.monotonic()
            elif now > done_at_kill and time.monotonic() - stable_since > 2:
                break  # the queue is drained; what is left belonged to the killed message
            time.sleep(0.05)
        assert _hashed(project) > done_at_kill, log.read_text()
    finally:
        second.terminate()
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()

    # The command finishes whatever the killed message left undone.
    out = io.StringIO()
    call_command("dedup", project.slug, stdout=out, stderr=io.StringIO())
    assert _hashed(project) == total
    assert f"{SEEDS} clusters" in out.getvalue()

    # Nothing doubled: each image in exactly one cluster, clusters equal to the photo groups.
    expected = {(min(ids), frozenset(ids)) for ids in groups}
    assert _snapshot(project) == expected
    assert ClusterMember.objects.filter(cluster__project=project).count() == total
    # And nothing left to do: reprocessing changes nothing.
    assert images_clean(image_ids=all_ids) == 0
    clusters_recompute(project=project)
    assert _snapshot(project) == expected
