"""URLs of a collector (PAR_ROLE=collector)."""

from django.contrib import admin
from django.urls import include, path

from parsite.plugin_urls import plugin_urlpatterns
from parsite.urls_common import handler400, handler403, handler404, handler500  # noqa: F401
from parsite.urls_common import urlpatterns as common

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("collector.urls")),
    *plugin_urlpatterns("collector"),
    *common,
]
