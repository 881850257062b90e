from django.contrib import admin

from datasets.models import Caption, Image, Membership, Pair, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "original_name", "width", "height", "format", "source")
    list_filter = ("project", "source", "format")
    search_fields = ("original_name", "sha256")
    raw_id_fields = ("uploaded_by",)
    list_select_related = ("project",)
    show_full_result_count = False


@admin.register(Caption)
class CaptionAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "text", "source", "author")
    search_fields = ("text",)
    raw_id_fields = ("image", "author")
    show_full_result_count = False


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "caption", "kind", "label", "split")
    list_filter = ("kind", "label", "split")
    raw_id_fields = ("image", "caption")
    show_full_result_count = False
