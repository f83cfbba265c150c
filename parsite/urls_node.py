"""URLs of a node (PAR_ROLE=node)."""

from django.urls import include, path

from parsite.plugin_urls import plugin_urlpatterns
from parsite.urls_common import handler400, handler403, handler404, handler500  # noqa: F401
from parsite.urls_common import urlpatterns as common

urlpatterns = [path("", include("node.urls")), *plugin_urlpatterns("node"), *common]
