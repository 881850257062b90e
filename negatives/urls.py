from django.urls import path

from negatives import views

urlpatterns = [
    path("projects/<slug:slug>/negatives/", views.negatives_page, name="negatives"),
]
