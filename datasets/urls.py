from django.urls import path

from datasets import cleaning_views, release_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/new/", views.project_create, name="project-create"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/settings/", views.project_settings, name="project-settings"),
    path("projects/<slug:slug>/members/", views.project_members, name="project-members"),
    path(
        "projects/<slug:slug>/members/<int:user_id>/remove/",
        views.project_member_remove,
        name="project-member-remove",
    ),
    path("projects/<slug:slug>/upload/", views.project_upload, name="project-upload"),
    path("projects/<slug:slug>/images/", views.image_grid, name="image-grid"),
    path("projects/<slug:slug>/images/<int:image_id>/", views.image_detail, name="image-detail"),
    path("projects/<slug:slug>/images/<int:image_id>/file", views.image_file, name="image-file"),
    path(
        "projects/<slug:slug>/images/<int:image_id>/thumbnail",
        views.image_thumbnail,
        name="image-thumbnail",
    ),
    path(
        "projects/<slug:slug>/duplicates/",
        cleaning_views.duplicates_review,
        name="duplicates-review",
    ),
    path(
        "projects/<slug:slug>/duplicates/<int:cluster_id>/confirm",
        cleaning_views.cluster_confirm,
        name="cluster-confirm",
    ),
    path(
        "projects/<slug:slug>/duplicates/<int:cluster_id>/split/<int:image_id>",
        cleaning_views.cluster_split,
        name="cluster-split",
    ),
    path("projects/<slug:slug>/quality/", cleaning_views.quality_flags, name="quality-flags"),
    path(
        "projects/<slug:slug>/quality/images/<int:flag_id>/override",
        cleaning_views.image_flag_override,
        name="image-flag-override",
    ),
    path(
        "projects/<slug:slug>/quality/captions/<int:flag_id>/override",
        cleaning_views.caption_flag_override,
        name="caption-flag-override",
    ),
    path("projects/<slug:slug>/releases/", release_views.release_list, name="releases"),
    path(
        "projects/<slug:slug>/releases/v<int:version>/",
        release_views.release_detail,
        name="release-detail",
    ),
    path(
        "projects/<slug:slug>/releases/v<int:version>/row",
        release_views.release_row,
        name="release-row",
    ),
    path(
        "projects/<slug:slug>/releases/v<int:version>/files/<path:name>",
        release_views.release_file,
        name="release-file",
    ),
]
