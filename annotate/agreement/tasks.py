"""Celery tasks of the agreement stage: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from annotate.agreement.services.consensus import consensus_recompute, projects_needing_recompute
from datasets.models import Project


@shared_task(name="agreement.recompute", acks_late=True)
def recompute_agreement(project_id: int) -> None:
    """Aggregate one project's judgments and store its agreement figures; safe to run twice."""
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        consensus_recompute(project=project)


@shared_task(name="agreement.recompute_due", acks_late=True)
def recompute_agreement_due() -> int:
    """Periodic: recompute every project with judgments newer than its latest figures."""
    due = projects_needing_recompute()
    for project_id in due:
        recompute_agreement.delay(project_id)
    return len(due)
