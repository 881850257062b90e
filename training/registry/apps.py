from django.apps import AppConfig


class TrainingRegistryConfig(AppConfig):
    name = "training.registry"
    label = "training_registry"
    verbose_name = "Model registry"
    default_auto_field = "django.db.models.BigAutoField"
