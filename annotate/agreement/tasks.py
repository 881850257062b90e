"""Celery tasks of the agreement stage: ids in, the service does the work; safe to run twice."""

from celery import shared_task

from annotate.agreement.services.consensus import projects_needing_recompute
from annotate.agreement.services.recomputes import (
    RECOMPUTE,
    consensus_recompute_job,
    recompute_request,
    recomputes_recover,
)


@shared_task(name=RECOMPUTE, acks_late=True)
def recompute_agreement(project_id: int) -> None:
    """Aggregate one project's judgments and store its agreement figures; coalesced with the
    other requests of the project (config.jobs), safe to run twice."""
    consensus_recompute_job(project_id=project_id)


@shared_task(name="agreement.recompute_due", acks_late=True)
def recompute_agreement_due() -> int:
    """Periodic: ask for a recompute of every project with judgments newer than its figures."""
    due = projects_needing_recompute()
    for project_id in due:
        recompute_request(project_id=project_id, delay=0)
    return len(due)


@shared_task(name="agreement.recover", acks_late=True)
def recover_agreement() -> int:
    """Periodic: send again the recomputes whose worker died mid-run."""
    return recomputes_recover()
