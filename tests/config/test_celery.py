"""Every task name the code, the routes and the beat schedule refer to is a registered task."""

import ast
import logging
from pathlib import Path

from django.conf import settings

from config.celery import TASK_PACKAGES, app

ROOT = Path(__file__).resolve().parents[2]


def enqueued_names() -> set[str]:
    """Names passed as the first argument of enqueue(...) / enqueue_on_commit(...) or of a
    coalesced job request (config.jobs.job_request) anywhere."""
    names = set()
    for package in ("config", "datasets", "annotate", "training"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None))
                    in ("enqueue", "enqueue_on_commit", "job_request", "job_request_now")
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    names.add(node.args[0].value)
    return names


def test_every_referenced_task_is_registered():
    app.loader.import_default_modules()
    registered = {name for name in app.tasks if not name.startswith("celery.")}
    referenced = (
        enqueued_names()
        | set(settings.CELERY_TASK_ROUTES)
        | {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    )
    assert len(enqueued_names()) >= 8
    assert referenced - registered == set()
    # Each task is named "<stage>.<what>" after the package that defines it.
    for name in registered:
        task = app.tasks[name]
        stage = name.split(".")[0]
        assert any(task.__module__ == f"{package}.tasks" for package in TASK_PACKAGES)
        assert task.__module__.split(".")[-2] == stage, (name, task.__module__)


def test_import_jobs_have_their_own_queue_and_every_queue_has_a_worker():
    """A small import must not wait behind thousands of thumbnail/cleaning tasks on `default`:
    ingest.run_import is routed to `ingest`, and every routed queue is consumed by the embedded
    worker (bin/run-embedded) and by a worker command of the README's Production section."""
    import re

    app.loader.import_default_modules()
    routed = app.amqp.router.route({}, "ingest.run_import", args=(1,), kwargs={})
    assert routed["queue"].name == "ingest"
    assert (
        app.amqp.router.route({}, "ingest.make_thumbnails", args=([1],), kwargs={})["queue"].name
        == settings.CELERY_TASK_DEFAULT_QUEUE
    )
    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    queues.add(settings.CELERY_TASK_DEFAULT_QUEUE)
    embedded = re.search(r"worker .*-Q (\S+)", (ROOT / "bin" / "run-embedded").read_text())
    assert embedded and queues <= set(embedded.group(1).split(","))
    readme = (ROOT / "README.md").read_text()
    documented = set()
    for line in re.findall(r"celery -A config worker -Q (\S+)", readme):
        documented |= set(line.split(","))
    assert queues <= documented, queues - documented


def test_a_worker_logs_the_settings_checks_that_fail_when_it_starts(settings, caplog):
    from celery.signals import worker_ready

    from config.celery import settings_checked

    assert settings_checked() == []
    settings.CONCORD_COLLECT_ALLOW_CIDRS = ["notacidr"]
    with caplog.at_level(logging.ERROR, logger="config.celery"):
        lines = settings_checked()
        worker_ready.send(sender=None)  # what a worker sends once it is up
    assert len(lines) == 1 and "concord.E002" in lines[0]
    assert len([r for r in caplog.records if r.name == "config.celery"]) == 2
    assert any("'notacidr' is not a network" in r.getMessage() for r in caplog.records)
