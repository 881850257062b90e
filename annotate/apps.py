from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    name = "annotate"
    verbose_name = "Annotation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from datasets.projects.signals import member_removed

        member_removed.connect(_leases_give_back, dispatch_uid="queue-give-back-on-removal")


def _leases_give_back(sender, project, user, **kwargs) -> None:
    """A removed member's held tasks go back to the pool now, not when their leases expire."""
    from annotate.models import Lease, LeaseState
    from annotate.queue.services.leases import lease_skip

    for lease in Lease.objects.filter(project=project, annotator=user, state=LeaseState.ACTIVE):
        lease_skip(lease=lease)
