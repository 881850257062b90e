from django.urls import path

from training.registry import views

urlpatterns = [
    path("projects/<slug:slug>/models/", views.model_list, name="models"),
    path("projects/<slug:slug>/models/<int:pk>/card", views.model_card, name="model-card"),
    path("projects/<slug:slug>/models/<int:pk>/cancel", views.model_cancel, name="model-cancel"),
    path("projects/<slug:slug>/models/<int:pk>/retry", views.model_retry, name="model-retry"),
]
