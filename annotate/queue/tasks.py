"""Celery tasks of the work queue: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from annotate.queue.services.leases import leases_reclaim
from annotate.queue.services.pool import tasks_open
from datasets.models import Project


@shared_task(name="queue.reclaim_expired_leases", acks_late=True)
def reclaim_expired_leases() -> int:
    return leases_reclaim()


@shared_task(name="queue.open_tasks", acks_late=True)
def open_tasks(project_id: int) -> None:
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        tasks_open(project=project)
