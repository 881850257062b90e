from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("training_registry", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="history",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
