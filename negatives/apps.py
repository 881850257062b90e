from django.apps import AppConfig


class NegativesConfig(AppConfig):
    name = "negatives"
    verbose_name = "Hard negatives"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from training.registry.signals import model_promoted

        model_promoted.connect(_mine_after_promotion, dispatch_uid="negatives-mine-on-promotion")


def _mine_after_promotion(sender, version, **kwargs) -> None:
    """A better model finds harder negatives: mine with it (on the training queue)."""
    from negatives.mining import mining_request

    mining_request(project=version.project)
