from django.urls import path

from datasets import views

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
]
