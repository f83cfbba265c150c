"""The collector's HTTP API: every view needs a valid key (see collector.auth)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from api.client import client_ip
from api.flowparams import FlowParamError, parse_flow_query
from api.ping import ping_payload
from api.routes import list_routes
from api.serializers import ErrorSerializer, PingSerializer
from collector import proxy
from collector.auth import (
    ApiKeyAuthentication,
    ApiKeyThrottle,
    HasNodeGrant,
    HasValidKey,
    IsAdminKey,
    SessionGrantAuthentication,
    request_key,
)
from collector.models import ApiKey, Node, RequestLog, parse_node_id
from collector.serializers import (
    API_KEY_PARAM,
    DATA_PCAP_PARAMS,
    ERRORS,
    KEYS_RESPONSE,
    NODE_ANSWER,
    NODE_ERRORS,
    NODES_RESPONSE,
    PCAP_RESPONSE,
)
from engine.flow import FlowQuery
from parsite.plugins import plugin_metadata

NODE_COMMANDS = ("ping", "status", "plugins", "routes")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CollectorView(APIView):
    """Base of every collector API view: a valid key is required, requests are throttled per key."""

    authentication_classes = [ApiKeyAuthentication, SessionGrantAuthentication]
    permission_classes = [HasValidKey]
    throttle_classes = [ApiKeyThrottle]
    query_params: tuple[str, ...] = ("api_key",)

    def check_permissions(self, request) -> None:
        # Counted before it is judged (DRF judges first): requests refused for a missing grant or a
        # bad node_id use up the key's rate too, and each of those is a row in the request log.
        super().check_throttles(request)
        super().check_permissions(request)

    def check_throttles(self, request) -> None:
        """Done in check_permissions, before the permissions; DRF's own call afterwards does nothing."""

    def perform_content_negotiation(self, request, force=False):
        # ?format=pcapng is the API's parameter, not a renderer DRF would refuse with a 404;
        # and a client asking for a pcap still gets its error as JSON (as on the node).
        return super().perform_content_negotiation(request, force=True)


def get_node(node_id: int) -> Node:
    try:
        return Node.objects.get(pk=node_id, active=True)
    except Node.DoesNotExist:
        raise exceptions.NotFound("no such node")


class PingView(CollectorView):
    """Is the collector up: its version, uptime and role (any valid key)."""

    @extend_schema(
        responses={200: PingSerializer, **ERRORS},
        parameters=[API_KEY_PARAM],
        summary="Version, uptime and role of this server",
    )
    def get(self, request):
        return Response(ping_payload())


class KeysView(CollectorView):
    """Every API key, by its shown prefix, with its grants (admin key only)."""

    permission_classes = [HasValidKey, IsAdminKey]

    @extend_schema(
        responses={200: KEYS_RESPONSE, 403: ErrorSerializer, **ERRORS},
        parameters=[API_KEY_PARAM],
        summary="Every API key by its prefix (admin key only; never a key itself)",
    )
    def get(self, request):
        answer = {}
        for key in ApiKey.objects.prefetch_related("nodes"):
            answer[key.prefix] = {
                "name": key.name,
                "owner": key.owner,
                "admin": key.admin,
                "all_nodes": key.all_nodes,
                "nodes": key.node_list(),
                "active": key.active,
                "created": key.created,
                "last_used": key.last_used,
                "expires": key.expires,
            }
        return Response(answer)


class NodesListView(CollectorView):
    """The nodes this key may query: node id -> host:port."""

    @extend_schema(
        responses={200: NODES_RESPONSE, **ERRORS},
        parameters=[API_KEY_PARAM],
        summary="The nodes this key may query",
    )
    def get(self, request):
        return Response({str(node.id): node.address for node in request.auth.queryable_nodes()})


class NodeCommandView(CollectorView):
    """A node's own answer to ping, status, plugins or routes (key granted that node)."""

    permission_classes = [HasValidKey, HasNodeGrant]

    def requested_node_id(self, request) -> int:
        return self.kwargs["node_id"]

    @extend_schema(
        responses={200: NODE_ANSWER, 400: ErrorSerializer, **NODE_ERRORS},
        parameters=[API_KEY_PARAM],
        summary="Ask a node for its ping, status, plugins or routes",
    )
    def get(self, request, node_id: int, command: str):
        if command not in NODE_COMMANDS:
            raise exceptions.ValidationError("this request is not supported")
        return proxy.node_json(get_node(node_id), command)


def node_params(flow: FlowQuery) -> dict[str, str]:
    """The node's /data.pcap parameters for a validated flow: times as exact epoch seconds."""
    params = {
        "src_addr": str(flow.a),
        "src_port": str(flow.a_port),
        "dst_addr": str(flow.b),
        "dst_port": str(flow.b_port),
        "start_time": _epoch(flow.start_ns),
        "end_time": _epoch(flow.end_ns),
    }
    if flow.proto is not None:
        params["proto"] = str(flow.proto)
    return params


def _epoch(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _datetime(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)  # exact, unlike a float timestamp


class DataPcapView(CollectorView):
    """One flow's packets from one node, streamed through; every request is logged."""

    permission_classes = [HasValidKey, HasNodeGrant]
    query_params = ("node_id", "src_addr", "src_port", "dst_addr", "dst_port", "start_time", "end_time")
    query_params += ("proto", "api_key")

    def initial(self, request, *args, **kwargs):
        self.started = time.monotonic()
        ip = client_ip(request)
        self.entry = RequestLog(client_ip=str(ip) if ip else None)
        super().initial(request, *args, **kwargs)

    def requested_node_id(self, request) -> int:
        raw = request.query_params.get("node_id", "").strip()
        if not raw:
            raise exceptions.ValidationError("missing parameter: node_id")
        try:
            self.entry.node = parse_node_id(raw)
        except ValueError:
            raise exceptions.ValidationError("invalid node_id: a node number is required")
        return self.entry.node

    @extend_schema(
        responses={(200, "application/vnd.tcpdump.pcap"): PCAP_RESPONSE, 400: ErrorSerializer, **NODE_ERRORS},
        parameters=DATA_PCAP_PARAMS,
        summary="The packets of one flow in a time window, as a pcap stream",
    )
    def get(self, request):
        node = get_node(self.requested_node_id(request))
        try:
            flow = parse_flow_query(
                request.query_params, utc=settings.PAR_UTC, max_window=settings.PAR_MAX_WINDOW
            )
        except FlowParamError as exc:
            raise exceptions.ValidationError(str(exc))
        self._describe(flow)
        return proxy.stream_from(node, "data.pcap", node_params(flow), self._stream_ended)

    def _describe(self, flow: FlowQuery) -> None:
        entry = self.entry
        entry.src_addr, entry.src_port = str(flow.a), flow.a_port
        entry.dst_addr, entry.dst_port = str(flow.b), flow.b_port
        entry.proto = flow.proto
        entry.start, entry.end = _datetime(flow.start_ns), _datetime(flow.end_ns)

    def _stream_ended(self, bytes_sent: int, error: str) -> None:
        self._save_entry(200, bytes_sent, error)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        # A stream logs itself when it ends; refusals are logged here, except
        # requests without a valid key (nobody to attribute them to).
        if isinstance(response, StreamingHttpResponse) or not hasattr(self, "entry"):
            return response
        try:
            key = request_key(request)
        except exceptions.APIException:
            key = None
        if key is not None:
            error = response.data.get("error", "") if isinstance(response.data, dict) else ""
            self._save_entry(response.status_code, 0, str(error))
        return response

    def _save_entry(self, status: int, bytes_sent: int, error: str) -> None:
        self.entry.nodes = str(self.entry.node or "")
        entry = self.entry
        entry.by(*self.request.auth.log_identity())
        entry.status = status
        entry.bytes_sent = bytes_sent
        entry.error = error[:300]
        entry.duration = round(time.monotonic() - self.started, 6)
        entry.save()


class RoutesView(CollectorView):
    """The routes this collector answers, with their path and query parameters."""

    @extend_schema(
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="[{path, methods, params, query}]"),
            **ERRORS,
        },
        parameters=[API_KEY_PARAM],
        summary="The routes this server answers, with their parameters",
    )
    def get(self, request):
        return Response(list_routes())


class PluginsView(CollectorView):
    """The plugins enabled on this collector."""

    @extend_schema(
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="[{id, name, description, ...}]"),
            **ERRORS,
        },
        parameters=[API_KEY_PARAM],
        summary="The plugins enabled on this server",
    )
    def get(self, request):
        return Response(plugin_metadata())
