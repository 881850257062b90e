from django.urls import path

from annotate import manager_views, views

urlpatterns = [
    path("projects/<slug:slug>/pairs/<int:pair_id>/gold", views.pair_gold_set, name="pair-gold"),
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
    path(
        "projects/<slug:slug>/agreement/",
        manager_views.agreement_dashboard,
        name="agreement",
    ),
    path(
        "projects/<slug:slug>/agreement/recompute",
        manager_views.agreement_recompute,
        name="agreement-recompute",
    ),
    path(
        "projects/<slug:slug>/agreement/disputed/",
        manager_views.disputed_list,
        name="agreement-disputed",
    ),
    path(
        "projects/<slug:slug>/agreement/items/<int:pair_id>/adjudicate",
        manager_views.item_adjudicate_request,
        name="agreement-adjudicate",
    ),
    path(
        "projects/<slug:slug>/agreement/annotators/<int:user_id>/suspend",
        manager_views.annotator_suspend_request,
        name="agreement-suspend",
    ),
    path(
        "projects/<slug:slug>/agreement/annotators/<int:user_id>/reinstate",
        manager_views.annotator_reinstate_request,
        name="agreement-reinstate",
    ),
]
