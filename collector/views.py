"""The collector's HTTP API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from parsite.serializers import PingSerializer
from parsite.views import ping_payload


class PingView(APIView):
    @extend_schema(responses=PingSerializer, summary="Version, uptime and role of this server")
    def get(self, request):
        return Response(ping_payload())
