from django.urls import path

from collector import metrics, views

urlpatterns = [
    path("ping", views.PingView.as_view(), name="collector-ping"),
    path("keys", views.KeysView.as_view(), name="collector-keys"),
    path("nodes/list", views.NodesListView.as_view(), name="collector-nodes-list"),
    path("nodes/<int:node_id>/<str:command>", views.NodeCommandView.as_view(), name="collector-node-command"),
    path("data.pcap", views.DataPcapView.as_view(), name="collector-data-pcap"),
    path("flows", views.FlowsView.as_view(), name="collector-flows"),
    path("metrics", metrics.metrics, name="collector-metrics"),
    path("routes", views.RoutesView.as_view(), name="collector-routes"),
    path("plugins", views.PluginsView.as_view(), name="collector-plugins"),
]
