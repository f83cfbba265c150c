from django.urls import path

import api.docs
from node import metrics, views

urlpatterns = [
    path("ping", views.PingView.as_view(), name="node-ping"),
    path("status", views.StatusView.as_view(), name="node-status"),
    path("data.pcap", views.DataPcapView.as_view(), name="node-data-pcap"),
    path("routes", views.RoutesView.as_view(), name="node-routes"),
    path("plugins", views.PluginsView.as_view(), name="node-plugins"),
    path("metrics", metrics.metrics, name="node-metrics"),
    path("schema", views.NodeSchemaView.as_view(), name="schema"),
    path("docs", views.NodeDocsView.as_view(url_name="schema"), name="docs"),
    path(api.docs.ASSET_ROUTE, views.docs_asset, name="node-docs-asset"),
]
