from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "datasets"
    verbose_name = "Datasets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from datasets import openapi  # noqa: F401  (registers the token scheme)
        from datasets.accounts import services
        from datasets.ingest.services import checks  # noqa: F401  (registers the collection settings checks)

        services.receivers_connect()
