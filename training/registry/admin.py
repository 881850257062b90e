from django.contrib import admin

from training.registry.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "project",
        "release",
        "status",
        "metric_value",
        "is_promoted",
        "created_at",
    )
    list_filter = ("status", "is_promoted")
    raw_id_fields = ("project", "release")
    readonly_fields = (
        "metrics",
        "history",
        "config",
        "checkpoint",
        "error",
        "created_at",
        "finished_at",
    )
