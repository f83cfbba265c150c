"""URLs of a node (PAR_ROLE=node).

Unlike the collector's, the node's /schema and /docs (node/urls.py) answer
allowed callers only, and an unknown path is a 404 only for them.
"""

from django.urls import include, path

from parsite.plugin_urls import plugin_urlpatterns
from parsite.urls_common import handler400, handler403, handler500  # noqa: F401

handler404 = "node.views.not_found"

urlpatterns = [path("", include("node.urls")), *plugin_urlpatterns("node")]
