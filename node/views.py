"""The node's HTTP API: ping, status, data.pcap, routes, plugins, and its OpenAPI document."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime

from django.conf import settings
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

import api.docs
from api.errors import error_response
from api.flowparams import FLOW_PARAMS, FlowParamError, parse_flow_query
from api.ping import ping_payload
from api.routes import list_routes
from api.serializers import ErrorSerializer, PingSerializer
from engine.flow import FlowQuery
from engine.formats import CaptureError
from engine.query import DamageReport, query_captures
from node import status
from node.acl import AllowedCaller, caller_allowed
from node.serializers import FLOW_PARAMETERS, PluginSerializer, RouteSerializer, StatusSerializer
from node.store import files_for_window, start_answer
from parsite.logs import iso_ns
from parsite.plugins import plugin_metadata

log = logging.getLogger("node.api")

PCAP_TYPE = "application/vnd.tcpdump.pcap"
NO_DATA = "no capture data for that timeframe"
_REFUSED = {403: OpenApiResponse(ErrorSerializer, description="the caller is not allowed")}


class NodeView(APIView):
    """Base of every node view: only allowed callers get an answer, and it is JSON unless a pcap."""

    authentication_classes: list = []
    permission_classes = [AllowedCaller]

    def perform_content_negotiation(self, request, force=False):
        # A client asking for a pcap (or anything) still gets its error as JSON, never a 406.
        return super().perform_content_negotiation(request, force=True)


class PingView(NodeView):
    @extend_schema(
        responses={200: PingSerializer, **_REFUSED}, summary="Version, uptime and role of this node"
    )
    def get(self, request):
        return Response(ping_payload())


class StatusView(NodeView):
    @extend_schema(
        responses={200: StatusSerializer, **_REFUSED},
        summary="Host, disk usage, capture process and filed data of this node",
    )
    def get(self, request):
        facts = status.node_status(settings.PAR_CAPTURE_DIR, settings.PAR_FILER_DIR, settings.PAR_FILE_PREFIX)
        return Response(facts)


class RoutesView(NodeView):
    @extend_schema(
        responses={200: RouteSerializer(many=True), **_REFUSED}, summary="The routes this node answers"
    )
    def get(self, request):
        return Response(list_routes(getattr(request, "urlconf", None)))


class PluginsView(NodeView):
    @extend_schema(
        responses={200: PluginSerializer(many=True), **_REFUSED}, summary="Plugins registered here"
    )
    def get(self, request):
        return Response(plugin_metadata())


class DataPcapView(NodeView):
    query_params = FLOW_PARAMS

    @extend_schema(
        parameters=FLOW_PARAMETERS,
        summary="The packets of one flow in a time window, as a pcap stream",
        description=(
            "Packets travelling either way between src_addr:src_port and dst_addr:dst_port "
            "(TCP, UDP or SCTP, or `proto`) with a timestamp in [start_time, end_time], byte-identical "
            "to how they were captured, in time order. Capture files still being written are searched too."
        ),
        responses={
            (200, PCAP_TYPE): OpenApiResponse(
                OpenApiTypes.BINARY, description="pcap (header only if no match)"
            ),
            400: OpenApiResponse(
                ErrorSerializer, description="a parameter is missing or invalid; it is named"
            ),
            **_REFUSED,
            404: OpenApiResponse(ErrorSerializer, description=NO_DATA),
            503: OpenApiResponse(ErrorSerializer, description="a capture file could not be read"),
        },
    )
    def get(self, request):
        try:
            query = parse_flow_query(
                request.query_params, utc=settings.PAR_UTC, max_window=settings.PAR_MAX_WINDOW
            )
        except FlowParamError as exc:
            return Response({"error": str(exc)}, status=400)
        return pcap_response(query)

    def head(self, request):
        """The headers the GET would answer, without running the query (no record is read)."""
        try:
            query = parse_flow_query(
                request.query_params, utc=settings.PAR_UTC, max_window=settings.PAR_MAX_WINDOW
            )
        except FlowParamError as exc:
            return Response({"error": str(exc)}, status=400)
        if not files_for_window(query.start_ns, query.end_ns, **_tree()):
            return error_response(NO_DATA, 404)
        # Streaming, as the GET: no Content-Length of an empty body is claimed for the download.
        response = StreamingHttpResponse((), content_type=PCAP_TYPE)
        pcap_headers(response, query)
        return response


def _tree() -> dict:
    """Where this node's capture files are, as the store's functions take it."""
    return {
        "filer_dir": settings.PAR_FILER_DIR,
        "capture_dir": settings.PAR_CAPTURE_DIR,
        "prefix": settings.PAR_FILE_PREFIX,
        "utc": settings.PAR_UTC,
    }


def pcap_response(query: FlowQuery) -> HttpResponseBase:
    """The engine's answer as a streamed download; an unreadable capture is a JSON 503, before any byte.

    Damaged files are read up to their damage, which is logged and named in ``X-PAR-Damaged``; the
    503 is for a window where nothing at all can be read.
    """
    reports: list[DamageReport] = []  # one per start (the store lists the window again, once)

    def answer(files):
        reports.append(DamageReport())
        return query_captures(files, query, damage=reports[-1])

    try:
        started = start_answer(query.start_ns, query.end_ns, answer, **_tree())
    except (OSError, CaptureError) as exc:
        log.error("cannot read capture data for %s: %s", describe(query), exc)
        why = "a capture file is damaged" if isinstance(exc, CaptureError) else exc.strerror or str(exc)
        return error_response(f"cannot read capture data: {why}", 503)
    if started is None:
        return error_response(NO_DATA, 404)
    first, chunks = started
    response = StreamingHttpResponse(stream(query, first, chunks), content_type=PCAP_TYPE)
    pcap_headers(response, query)
    damaged(response, reports[-1], query)
    return response


def damaged(response: HttpResponseBase, report: DamageReport, query: FlowQuery) -> None:
    """Log each damaged file the answer read around (one line each) and name them in ``X-PAR-Damaged``."""
    for exc in report.found:
        log.warning("data.pcap %s: read up to the damage of %s", describe(query), exc)
    if report.found:
        response["X-PAR-Damaged"] = ", ".join(report.names)


def pcap_headers(response: StreamingHttpResponse, query: FlowQuery) -> None:
    """The headers of a pcap answer, the same for GET and HEAD."""
    response["Content-Disposition"] = f'attachment; filename="{pcap_filename(query)}"'
    response["Cache-Control"] = "no-store"


def stream(query: FlowQuery, first: bytes, chunks: Generator[bytes, None, None]) -> Iterator[bytes]:
    """Yield the answer; closing this generator (client gone) closes the engine's, which frees the files."""
    sent, started, outcome = 0, time.monotonic(), "stopped (client went away)"
    try:
        yield first
        sent += len(first)
        for chunk in chunks:
            yield chunk
            sent += len(chunk)
        outcome = "served"
    except Exception:
        outcome = "failed"
        log.exception("data.pcap %s failed after %d bytes: the answer is cut short", describe(query), sent)
        raise  # the server drops the connection: a truncated pcap never looks complete
    finally:
        chunks.close()
        log.info(
            "data.pcap %s %s: %d bytes in %.2f s", describe(query), outcome, sent, time.monotonic() - started
        )


def describe(query: FlowQuery) -> str:
    return (
        f"{query.a}:{query.a_port}<->{query.b}:{query.b_port}"
        f" proto={'any' if query.proto is None else query.proto} [{iso_ns(query.start_ns)}, {iso_ns(query.end_ns)}]"
    )


def _safe_addr(ip) -> str:
    # Colons are not allowed in file names on some systems; the zone is never present (refused).
    return str(ip).replace(":", "-")


def compact_time(ns: int) -> str:
    """``20150226T160000Z``, with the fraction when there is one (``...T160000.25Z``)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def pcap_filename(query: FlowQuery) -> str:
    """``<src>_<sport>-<dst>_<dport>-<start>.pcap``: only letters, digits, ``.``, ``-`` and ``_``."""
    return (
        f"{_safe_addr(query.a)}_{query.a_port}-{_safe_addr(query.b)}_{query.b_port}"
        f"-{compact_time(query.start_ns)}.pcap"
    )


# --- The OpenAPI document and its docs, for allowed callers only -------------------------------


class _JsonErrors:
    """A refusal from a view that renders YAML or HTML is still JSON."""

    def handle_exception(self, exc):
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)


class NodeSchemaView(_JsonErrors, SpectacularAPIView):
    authentication_classes: list = []
    permission_classes = [AllowedCaller]


class NodeDocsView(_JsonErrors, SpectacularSwaggerView):
    authentication_classes: list = []
    permission_classes = [AllowedCaller]


def docs_asset(request, path: str):
    """Swagger UI's files, shipped with drf-spectacular-sidecar: /docs works with no internet."""
    if not caller_allowed(request):
        return error_response(AllowedCaller.message, 403)
    return api.docs.docs_asset(request, path)


def not_found(request, exception=None):
    """404 for an unknown path, but only to allowed callers: others learn nothing of the routes."""
    if not caller_allowed(request):
        return error_response(AllowedCaller.message, 403)
    return error_response("not found", 404)
