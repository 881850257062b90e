from django.urls import path

from datasets.browse import apis as browse
from datasets.ingest import apis as ingest
from datasets.projects import apis as projects
from datasets.releases import apis as releases

urlpatterns = [
    path("projects/", projects.ProjectListApi.as_view(), name="api-projects"),
    path("projects/<slug:slug>/", projects.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<slug:slug>/images/", ingest.ImageListApi.as_view(), name="api-images"),
    path(
        "projects/<slug:slug>/images/<int:image_id>/",
        ingest.ImageDetailApi.as_view(),
        name="api-image",
    ),
    path("projects/<slug:slug>/pairs/", browse.PairListApi.as_view(), name="api-pairs"),
    path(
        "projects/<slug:slug>/pairs/actions/",
        browse.PairActionApi.as_view(),
        name="api-pairs-act",
    ),
    path("projects/<slug:slug>/captions/", ingest.CaptionListApi.as_view(), name="api-captions"),
    path("projects/<slug:slug>/imports/", ingest.ImportListApi.as_view(), name="api-imports"),
    path(
        "projects/<slug:slug>/collections/",
        ingest.CollectionListApi.as_view(),
        name="api-collections",
    ),
    path(
        "projects/<slug:slug>/collections/<int:job_id>/",
        ingest.CollectionDetailApi.as_view(),
        name="api-collection",
    ),
    path(
        "projects/<slug:slug>/collections/<int:job_id>/pause/",
        ingest.CollectionPauseApi.as_view(),
        name="api-collection-pause",
    ),
    path(
        "projects/<slug:slug>/collections/<int:job_id>/resume/",
        ingest.CollectionResumeApi.as_view(),
        name="api-collection-resume",
    ),
    path(
        "projects/<slug:slug>/collections/<int:job_id>/retry-failed/",
        ingest.CollectionRetryApi.as_view(),
        name="api-collection-retry",
    ),
    path(
        "projects/<slug:slug>/imports/<int:job_id>/",
        ingest.ImportDetailApi.as_view(),
        name="api-import",
    ),
    path(
        "projects/<slug:slug>/imports/<int:job_id>/rows/",
        ingest.ImportRowsApi.as_view(),
        name="api-import-rows",
    ),
    path("projects/<slug:slug>/releases/", releases.ReleaseListApi.as_view(), name="api-releases"),
    path(
        "projects/<slug:slug>/releases/<int:version>/",
        releases.ReleaseDetailApi.as_view(),
        name="api-release",
    ),
    path(
        "projects/<slug:slug>/releases/<int:version>/pin/",
        releases.ReleasePinApi.as_view(),
        name="api-release-pin",
    ),
    path(
        "projects/<slug:slug>/releases/<int:version>/files/<path:name>",
        releases.ReleaseFileApi.as_view(),
        name="api-release-file",
    ),
]
