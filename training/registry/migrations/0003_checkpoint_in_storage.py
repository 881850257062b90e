from pathlib import Path

from django.conf import settings
from django.db import migrations, models


def checkpoint_names(apps, schema_editor):
    """Checkpoints were absolute paths under CONCORD_MODELS_ROOT; they become names in the
    "models" storage, whose local default is that same folder."""
    ModelVersion = apps.get_model("training_registry", "ModelVersion")
    root = Path(settings.CONCORD_MODELS_ROOT).resolve()
    for version in ModelVersion.objects.exclude(checkpoint="").only("pk", "checkpoint"):
        path = Path(version.checkpoint)
        if not path.is_absolute():
            continue
        try:
            name = path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue  # outside the models folder: left as it was, and reported when used
        ModelVersion.objects.filter(pk=version.pk).update(checkpoint=name)


class Migration(migrations.Migration):
    dependencies = [
        ("training_registry", "0002_modelversion_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="checkpoint_sha256",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(checkpoint_names, migrations.RunPython.noop),
    ]
