"""GET /plugins/sysinfo/ (behind the role's own checks, see parsite/plugin_urls.py)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.plugins import plugin_setting
from api.serializers import ErrorSerializer
from plugins.sysinfo.api.serializers import SysinfoSerializer
from plugins.sysinfo.probe import snapshot


class SysinfoView(APIView):
    @extend_schema(
        responses={200: SysinfoSerializer, 401: ErrorSerializer, 403: ErrorSerializer},
        summary="OS, kernel, CPUs, memory, uptime, load and interface counters of this host",
        tags=["plugins"],
    )
    def get(self, request):
        patterns = plugin_setting("sysinfo", "interfaces")
        if isinstance(patterns, str):  # PAR_PLUGINS_CONFIG may give one pattern as a string
            patterns = [patterns]
        return Response(snapshot(patterns))
