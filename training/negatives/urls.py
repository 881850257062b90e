from django.urls import path

from training.negatives import views

urlpatterns = [
    path("projects/<slug:slug>/negatives/", views.negatives_page, name="negatives"),
]
