from celery import shared_task

from annotate.pool import tasks_open
from annotate.queue import leases_reclaim
from datasets.models import Project


@shared_task(acks_late=True)
def reclaim_expired_leases() -> int:
    return leases_reclaim()


@shared_task(acks_late=True)
def open_tasks(project_id: int) -> None:
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        tasks_open(project=project)
