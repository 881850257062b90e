from django.urls import path

from annotate.queue import apis

urlpatterns = [
    path("projects/<slug:slug>/tasks/next/", apis.TaskNextApi.as_view(), name="api-task-next"),
    path(
        "projects/<slug:slug>/tasks/heartbeat/",
        apis.HeartbeatApi.as_view(),
        name="api-task-heartbeat",
    ),
    path("leases/<int:lease_id>/submit/", apis.LeaseSubmitApi.as_view(), name="api-lease-submit"),
    path("leases/<int:lease_id>/skip/", apis.LeaseSkipApi.as_view(), name="api-lease-skip"),
]
