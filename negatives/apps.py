from django.apps import AppConfig


class NegativesConfig(AppConfig):
    name = "negatives"
    verbose_name = "Hard negatives"
    default_auto_field = "django.db.models.BigAutoField"
