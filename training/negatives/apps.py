from django.apps import AppConfig


class NegativesConfig(AppConfig):
    """Hard negatives: proposals from random captions, the promoted model and text edits,
    judged by people in challenge items. The app keeps its label ("negatives") from when it
    lived at the top level, so its tables and migrations are unchanged."""

    name = "training.negatives"
    label = "negatives"
    verbose_name = "Hard negatives"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotate.agreement.signals import labels_recomputed
        from annotate.queue.services.pool import verify_exclusion_register
        from training.registry.signals import model_promoted

        model_promoted.connect(_mine_after_promotion, dispatch_uid="negatives-mine-on-promotion")
        labels_recomputed.connect(_decide_after_recompute, dispatch_uid="negatives-decide")
        # Proposed negatives are judged inside challenge items, never one by one.
        verify_exclusion_register(_is_proposal)


def _is_proposal(pair):
    from django.db.models import Exists

    from training.negatives.models import Proposal

    return Exists(Proposal.objects.filter(pair=pair))


def _mine_after_promotion(sender, version, **kwargs) -> None:
    """A better model finds harder negatives: mine with it (on the training queue)."""
    from training.negatives.services.mining import mining_request

    mining_request(project=version.project)


def _decide_after_recompute(sender, project, now, **kwargs) -> None:
    """Settled proposals become verified negatives or found positives."""
    from training.negatives.services.outcomes import proposals_decide

    proposals_decide(project=project, now=now)
