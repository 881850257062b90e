from django.urls import path

from training.negatives import views

urlpatterns = [
    path("projects/<slug:slug>/negatives/", views.negatives_page, name="negatives"),
    path(
        "projects/<slug:slug>/negatives/mining/cancel",
        views.mining_cancel_view,
        name="mining-cancel",
    ),
    path(
        "projects/<slug:slug>/negatives/mining/retry",
        views.mining_retry_view,
        name="mining-retry",
    ),
]
