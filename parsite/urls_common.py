"""Routes every role serves: the OpenAPI document and its offline docs."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from parsite.docs import ASSET_ROUTE, docs_asset

urlpatterns = [
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(ASSET_ROUTE, docs_asset, name="docs-asset"),
]

handler400 = "parsite.errors.handler400"
handler403 = "parsite.errors.handler403"
handler404 = "parsite.errors.handler404"
handler500 = "parsite.errors.handler500"
