from django.urls import path

from annotate import views

urlpatterns = [
    path("projects/<slug:slug>/tasks/open", views.tasks_open_request, name="tasks-open"),
    path("projects/<slug:slug>/annotate/", views.annotate_page, name="annotate"),
    path(
        "projects/<slug:slug>/annotate/<int:lease_id>/submit",
        views.annotate_submit,
        name="annotate-submit",
    ),
    path(
        "projects/<slug:slug>/annotate/<int:lease_id>/skip",
        views.annotate_skip,
        name="annotate-skip",
    ),
    path("projects/<slug:slug>/annotate/undo", views.annotate_undo, name="annotate-undo"),
    path(
        "projects/<slug:slug>/annotate/heartbeat",
        views.annotate_heartbeat,
        name="annotate-heartbeat",
    ),
]
