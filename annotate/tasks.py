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


@shared_task(acks_late=True)
def recompute_agreement(project_id: int) -> None:
    """Aggregate one project's judgments and store its agreement figures; safe to run twice."""
    from annotate.consensus import consensus_recompute

    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        consensus_recompute(project=project)


@shared_task(acks_late=True)
def recompute_agreement_due() -> int:
    """Periodic: recompute every project with judgments newer than its latest figures."""
    from annotate.consensus import projects_needing_recompute

    due = projects_needing_recompute()
    for project_id in due:
        recompute_agreement.delay(project_id)
    return len(due)
