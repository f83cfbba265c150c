from django.urls import path

from collector import views

urlpatterns = [
    path("ping", views.PingView.as_view(), name="collector-ping"),
]
