from django.urls import path

from tests.plugins.par_test_plugin.api import views

urlpatterns = [
    path("echo", views.EchoView.as_view(), name="echo"),
    path("items/<int:number>", views.ItemView.as_view(), name="item"),
    path("plain", views.plain, name="plain"),
]
