"""The Celery application: configured from Django settings (CELERY_* names).

Tasks have explicit names ("<stage>.<what>") so that routes, the beat schedule and the services
that enqueue them refer to a name, not to the module a task lives in: a service never imports its
own task module (which imports the service back), and moving a module renames nothing on the
broker.
"""

import logging
import os

from celery import Celery
from celery.signals import worker_ready
from django.db import transaction
from kombu.transport import TRANSPORT_ALIASES

# kombu's filesystem transport, with messages renamed into place (config/broker.py says why),
# wherever a broker URL says filesystem://.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

# The packages whose ``tasks`` module defines Celery tasks, one per pipeline stage.
TASK_PACKAGES = [
    "datasets.ingest",
    "datasets.curation",
    "datasets.releases",
    "annotate.queue",
    "annotate.agreement",
    "training.registry",
    "training.negatives",
]

app = Celery("concord")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(TASK_PACKAGES)


@worker_ready.connect
def settings_checked(**_kwargs) -> list[str]:
    """A worker runs no ``manage.py check``: at its start it logs Concord's own system checks
    (the ``concord`` tag: collection settings, concord.E0xx) that fail, one ERROR each, so a
    wrong setting is in the worker's log before the first job meets it. Returns the lines."""
    from django.core import checks

    lines = [str(message) for message in checks.run_checks(tags=["concord"])]
    for line in lines:
        logger.error("Settings: %s", line)
    return lines


def enqueue(name: str, *args: object, countdown: float | None = None) -> None:
    """Send the task called ``name`` with positional ``args`` now (routes and eager mode apply),
    to run no sooner than ``countdown`` seconds from now when given.

    Raises whatever the broker raises when it cannot take the message.
    """
    if name not in app.tasks:
        # A process that has not imported the task modules yet (a web worker, a command): import
        # them, so the route and an eager setting of the task are known before it is sent.
        app.loader.import_default_modules()
    app.signature(name, args=args).apply_async(countdown=countdown)


def enqueue_on_commit(name: str, *args: object, what: str) -> None:
    """Send the task called ``name`` once the current transaction commits (at once outside one).

    The work it stands for is already committed, so a broker that is away must not undo it: the
    failure is logged with ``what`` (e.g. "thumbnails for 8 images") and the periodic jobs or the
    matching management command catch up later.
    """

    def send() -> None:
        try:
            enqueue(name, *args)
        except Exception:
            logger.exception("Could not enqueue %s (%s)", what, name)

    transaction.on_commit(send)
