from django.urls import path

from datasets import apis

urlpatterns = [
    path("projects/", apis.ProjectListApi.as_view(), name="api-projects"),
    path("projects/<slug:slug>/", apis.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<slug:slug>/images/", apis.ImageListApi.as_view(), name="api-images"),
    path(
        "projects/<slug:slug>/images/<int:image_id>/",
        apis.ImageDetailApi.as_view(),
        name="api-image",
    ),
    path("projects/<slug:slug>/captions/", apis.CaptionListApi.as_view(), name="api-captions"),
    path("projects/<slug:slug>/releases/", apis.ReleaseListApi.as_view(), name="api-releases"),
    path(
        "projects/<slug:slug>/releases/<int:version>/",
        apis.ReleaseDetailApi.as_view(),
        name="api-release",
    ),
    path(
        "projects/<slug:slug>/releases/<int:version>/files/<path:name>",
        apis.ReleaseFileApi.as_view(),
        name="api-release-file",
    ),
]
