from django.urls import path

from node import views

urlpatterns = [
    path("ping", views.PingView.as_view(), name="node-ping"),
]
