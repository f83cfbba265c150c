"""The node's HTTP API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from node.acl import AllowedCaller
from parsite.serializers import PingSerializer
from parsite.views import ping_payload


class NodeView(APIView):
    """Base of every node view: only allowed callers get an answer."""

    authentication_classes: list = []
    permission_classes = [AllowedCaller]


class PingView(NodeView):
    @extend_schema(responses=PingSerializer, summary="Version, uptime and role of this server")
    def get(self, request):
        return Response(ping_payload())
