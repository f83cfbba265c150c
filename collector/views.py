"""The collector's HTTP API: every view needs a valid key (see collector.auth)."""

from __future__ import annotations

import logging
from functools import partial

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from api.client import client_ip
from api.flowparams import FLOW_PARAMS, window_text
from api.parameters import RECORD_BODY, RECORD_DESCRIPTION
from api.ping import ping_payload
from api.plugins import plugin_metadata
from api.recordpost import RecordPost
from api.routes import list_routes
from api.serializers import ErrorSerializer, PingSerializer
from collector import fanout, flows, proxy
from collector.auth import (
    ApiKeyAuthentication,
    ApiKeyThrottle,
    HasNodeGrant,
    HasValidKey,
    IsAdminKey,
    SessionGrantAuthentication,
    request_key,
)
from collector.models import ApiKey, Node, RequestLog
from collector.requestlog import after_answer, query_text
from collector.selection import (
    PASSED_PARAMS,
    listing_options,
    node_params,
    parse_flow,
    requested_nodes,
    resolve_nodes,
    take_download_slot,
    wants_pcapng,
)
from collector.serializers import (
    API_KEY_PARAM,
    DATA_PCAP_PARAMS,
    ERRORS,
    FLOWS_PARAMS_DOC,
    FLOWS_RESPONSE,
    KEYS_RESPONSE,
    NODE_ANSWER,
    NODE_ERRORS,
    NODES_RESPONSE,
    PCAP_RESPONSE,
    RECORD_FLOWS_PARAMS,
    RECORD_PCAP_PARAMS,
)
from engine.selection.selectors import Selection

NODE_COMMANDS = ("ping", "status", "plugins", "routes")

log = logging.getLogger("collector.views")


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
        return Response({key.prefix: key.to_dict() for key in ApiKey.objects.prefetch_related("nodes")})


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

    def requested_node_ids(self, request) -> list[int]:
        return [self.kwargs["node_id"]]

    @extend_schema(
        responses={200: NODE_ANSWER, 400: ErrorSerializer, **NODE_ERRORS},
        parameters=[API_KEY_PARAM],
        summary="Ask a node for its ping, status, plugins or routes",
    )
    def get(self, request, node_id: int, command: str):
        if command not in NODE_COMMANDS:
            raise exceptions.ValidationError("this request is not supported")
        return proxy.node_json(get_node(node_id), command)


class LoggedQueryView(CollectorView):
    """A query of the nodes' data: the nodes asked are granted, and every request is logged once."""

    permission_classes = [HasValidKey, HasNodeGrant]
    log_view = ""

    def initial(self, request, *args, **kwargs):
        ip = client_ip(request)
        query = request.query_params
        self.entry = RequestLog.begin(
            self.log_view, method=request.method, client_ip=ip and str(ip), query=query
        )
        super().initial(request, *args, **kwargs)

    def perform_content_negotiation(self, request, force=False):
        # ``format`` names the capture format (pcap, pcapng), not one of DRF's renderers.
        return super().perform_content_negotiation(request, force=True)

    def requested_node_ids(self, request) -> list[int] | None:
        """The node ids asked (None: ``all``), read from ``node_id`` once."""
        if not hasattr(self, "_node_ids"):
            self._node_ids = requested_nodes(request.query_params)
        return self._node_ids

    def asked(self, request) -> tuple[list[Node], Selection]:
        """The nodes and the flow asked, noted in the request log."""
        nodes = resolve_nodes(request.auth, self.requested_node_ids(request))
        self.entry.asked(node.id for node in nodes)
        flow = parse_flow(request.query_params, listing=self.log_view == "flows")
        self.entry.describe(flow)
        self.window = window_text(flow.start_ns, flow.end_ns)
        return nodes, flow

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        # Every answer to a window read carries it (docs/SPEC.md "Selecting packets"): the nodes' own, as
        # passed on, or the one they were all sent, when none is (a merge, a /flows, a failure).
        window = getattr(self, "window", None)
        if window is not None and "X-PAR-Window" not in response:
            response["X-PAR-Window"] = window
        # gunicorn refuses to send a header holding a control character, after this view is done:
        # the client would get a bare 400, and a download's row and slot would wait for its lease.
        for name, value in list(response.items()):
            if not proxy.safe_header_value(value):
                log.warning("%s header not sent: it holds a control character", name)
                del response[name]
        # A download logs itself when it ends; other answers are logged once they are sent (the
        # client does not wait for the row), except OPTIONS (no query) and requests without a
        # valid key (nobody to attribute them to).
        if getattr(response, "par_logs_itself", False) or request.method == "OPTIONS":
            return response
        try:
            key = request_key(request)
        except exceptions.APIException:
            key = None
        if key is not None and hasattr(self, "entry"):
            if not self.entry.nodes and getattr(self, "_node_ids", None):
                self.entry.asked(self._node_ids)  # refused before the nodes were looked up
            data = getattr(response, "data", None)
            error = data.get("error", "") if isinstance(data, dict) else ""
            after_answer(response, partial(self.entry.finish, response.status_code, 0, str(error)))
        return response

    def handle_exception(self, exc):
        try:
            return super().handle_exception(exc)
        except Exception:
            # Not an API error: Django answers 500 and finalize_response never runs; the row is
            # written (and the slot given back) here.
            entry = getattr(self, "entry", None)
            if entry is not None:
                try:
                    entry.finish(500, 0, f"server error: {type(exc).__name__}")
                except Exception:
                    log.exception("could not write the request log row")
            raise

    def perform_authentication(self, request) -> None:
        super().perform_authentication(request)
        key = request_key(request)
        if key is not None:
            self.entry.by(*key.log_identity())


class RecordQueryView(RecordPost, LoggedQueryView):
    """A query of the nodes' data that also takes one Suricata or Zeek record as a POST body."""

    def record_asked(self, request) -> None:
        self.entry.query = query_text(request.query_params)


class DataPcapView(RecordQueryView):
    """The packets selected, one node's streamed through or several nodes' merged by time."""

    log_view = "data.pcap"
    query_params = ("node_id", *FLOW_PARAMS, *PASSED_PARAMS, "api_key")

    @extend_schema(
        responses={(200, "application/vnd.tcpdump.pcap"): PCAP_RESPONSE, 400: ErrorSerializer, **NODE_ERRORS},
        parameters=DATA_PCAP_PARAMS,
        summary="The packets selected in a time window, from one node or several merged, as a pcap stream",
    )
    def get(self, request):
        nodes, flow = self.asked(request)
        self.entry.hold(take_download_slot(request.auth.holder, request.auth.who))
        params = node_params(request.query_params, flow)
        return fanout.pcap_answer(nodes, params, self.entry, pcapng=wants_pcapng(request.query_params))

    def head(self, request):
        """The answer's headers, estimates included, without any node sending a packet."""
        nodes, flow = self.asked(request)
        params = node_params(request.query_params, flow)
        return fanout.pcap_answer(
            nodes, params, self.entry, method="HEAD", pcapng=wants_pcapng(request.query_params)
        )

    @extend_schema(
        request=RECORD_BODY,
        responses={(200, "application/vnd.tcpdump.pcap"): PCAP_RESPONSE, 400: ErrorSerializer, **NODE_ERRORS},
        parameters=RECORD_PCAP_PARAMS,
        summary="The packets of the flow a Suricata or Zeek record names, from one node or several merged",
        description=RECORD_DESCRIPTION,
    )
    def post(self, request):
        return self.answer_record(request)


class FlowsView(RecordQueryView):
    """The flows selected, from the indexes of one node or several, merged; every request logged."""

    log_view = "flows"
    query_params = ("node_id", *FLOW_PARAMS, *PASSED_PARAMS, "limit", "sort", "output", "api_key")

    @extend_schema(
        responses={200: FLOWS_RESPONSE, 400: ErrorSerializer, **NODE_ERRORS},
        parameters=FLOWS_PARAMS_DOC,
        summary="The flows selected in a time window, from one node or several merged",
    )
    def get(self, request):
        nodes, flow = self.asked(request)
        sort, limit, output = listing_options(request.query_params)
        params = node_params(request.query_params, flow, extra=("sort",))
        params["limit"] = str(limit)
        return flows.flows_answer(nodes, params, self.entry, sort=sort, limit=limit, output=output)

    @extend_schema(
        request=RECORD_BODY,
        responses={200: FLOWS_RESPONSE, 400: ErrorSerializer, **NODE_ERRORS},
        parameters=RECORD_FLOWS_PARAMS,
        summary="The flows of the flow a Suricata or Zeek record names, from one node or several merged",
        description=RECORD_DESCRIPTION,
    )
    def post(self, request):
        return self.answer_record(request)


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
