from django.urls import path

from training.registry import views

urlpatterns = [
    path("projects/<slug:slug>/models/", views.model_list, name="models"),
    path("projects/<slug:slug>/models/<int:pk>/card", views.model_card, name="model-card"),
]
