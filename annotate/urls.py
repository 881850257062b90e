from django.urls import path

from annotate.agreement import views as agreement
from annotate.queue import views as queue

urlpatterns = [
    path("projects/<slug:slug>/pairs/<int:pair_id>/gold", queue.pair_gold_set, name="pair-gold"),
    path("projects/<slug:slug>/tasks/open", queue.tasks_open_request, name="tasks-open"),
    path("projects/<slug:slug>/annotate/", queue.annotate_page, name="annotate"),
    path(
        "projects/<slug:slug>/annotate/<int:lease_id>/submit",
        queue.annotate_submit,
        name="annotate-submit",
    ),
    path(
        "projects/<slug:slug>/annotate/<int:lease_id>/check",
        queue.annotate_check,
        name="annotate-check",
    ),
    path(
        "projects/<slug:slug>/annotate/<int:lease_id>/skip",
        queue.annotate_skip,
        name="annotate-skip",
    ),
    path("projects/<slug:slug>/annotate/undo", queue.annotate_undo, name="annotate-undo"),
    path(
        "projects/<slug:slug>/annotate/heartbeat",
        queue.annotate_heartbeat,
        name="annotate-heartbeat",
    ),
    path(
        "projects/<slug:slug>/agreement/",
        agreement.agreement_dashboard,
        name="agreement",
    ),
    path(
        "projects/<slug:slug>/agreement/recompute",
        agreement.agreement_recompute,
        name="agreement-recompute",
    ),
    path(
        "projects/<slug:slug>/agreement/disputed/",
        agreement.disputed_list,
        name="agreement-disputed",
    ),
    path(
        "projects/<slug:slug>/agreement/items/<int:pair_id>/adjudicate",
        agreement.item_adjudicate_request,
        name="agreement-adjudicate",
    ),
    path(
        "projects/<slug:slug>/agreement/annotators/<int:user_id>/suspend",
        agreement.annotator_suspend_request,
        name="agreement-suspend",
    ),
    path(
        "projects/<slug:slug>/agreement/annotators/<int:user_id>/reinstate",
        agreement.annotator_reinstate_request,
        name="agreement-reinstate",
    ),
]
