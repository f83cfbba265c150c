from django.urls import path

from collector import metrics, page, views
from collector.jobs import views as exports

urlpatterns = [
    path("ping", views.PingView.as_view(), name="collector-ping"),
    path("keys", views.KeysView.as_view(), name="collector-keys"),
    path("nodes/list", views.NodesListView.as_view(), name="collector-nodes-list"),
    path("nodes/<int:node_id>/<str:command>", views.NodeCommandView.as_view(), name="collector-node-command"),
    path("data.pcap", views.DataPcapView.as_view(), name="collector-data-pcap"),
    path("flows", views.FlowsView.as_view(), name="collector-flows"),
    path("exports", exports.ExportsView.as_view(), name="collector-exports"),
    path("exports/<int:export_id>", exports.ExportView.as_view(), name="collector-export"),
    path("exports/<int:export_id>/data.pcap", exports.ExportDataView.as_view(), name="collector-export-data"),
    path("metrics", metrics.metrics, name="collector-metrics"),
    path("routes", views.RoutesView.as_view(), name="collector-routes"),
    path("plugins", views.PluginsView.as_view(), name="collector-plugins"),
    path("ui", page.to_page),
    path("ui/", page.page, name="ui-page"),
    path("ui/login", page.LoginView.as_view(), name="ui-login"),
    path("ui/logout", page.LogoutView.as_view(), name="ui-logout"),
]
