"""The node's HTTP API: ping, status, data.pcap, routes, plugins, and its OpenAPI document."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

import api.docs
from api.errors import ApiError, error_response, refusal_response, too_large_message
from api.flowlisting import CSV_TYPE, columns_csv, flows_json
from api.flowparams import (
    FLOWS_PARAMS,
    PCAP_PARAMS,
    AnswerOptions,
    parse_answer_options,
    parse_listing_options,
    parse_selection,
    window_text,
)
from api.parameters import (
    ANSWER_PARAMETERS,
    FLOWS_HEADERS,
    LISTING_PARAMETERS,
    PCAP_HEADERS,
    RECORD_BODY,
    RECORD_DESCRIPTION,
    RECORD_HEADERS,
    RECORD_WINDOW_PARAMETERS,
)
from api.ping import ping_payload
from api.plugins import plugin_metadata
from api.recordpost import RecordPost
from api.routes import list_routes
from api.serializers import ErrorSerializer, FlowsSerializer, PingSerializer
from api.streamgate import GATE
from api.times import format_iso
from engine.flows.listing import list_flows
from engine.formats import CaptureError
from engine.query.answer import Limits
from engine.query.plan import CaptureFile, DamageReport, Estimate, estimate, query_captures
from engine.selection.selectors import Selection
from node import status
from node.acl import AllowedCaller, refused
from node.serializers import (
    FLOW_PARAMETERS,
    FLOWS_PARAMETERS,
    PluginSerializer,
    RouteSerializer,
    StatusSerializer,
)
from node.store import captures_for_window, start_answer

log = logging.getLogger("node.api")

PCAP_TYPE = "application/vnd.tcpdump.pcap"
PCAPNG_TYPE = "application/x-pcapng"
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


PCAP_DESCRIPTION = (
    "The packets whose flow matches every selector given (none: every packet) with a timestamp in "
    "[start_time, end_time], byte-identical to how they were captured, in time order across files. Capture "
    "files still being written are searched too. Every answer carries `X-PAR-Window: <start>/<end>` (ISO "
    "8601, UTC, ns), the window searched; a 200 carries `X-PAR-Estimate-Packets` and `X-PAR-Estimate-Bytes`, "
    "upper bounds of the answer taken from the indexes before the first byte (within limit_packets and "
    "limit_bytes), and `X-PAR-Estimate-Unindexed` naming the files without an index counted whole."
)


_PCAP_RESPONSES: dict = {
    (200, PCAP_TYPE): OpenApiResponse(OpenApiTypes.BINARY, description="pcap (header only if no match)"),
    (200, PCAPNG_TYPE): OpenApiResponse(OpenApiTypes.BINARY, description="pcapng, with format=pcapng"),
    400: OpenApiResponse(
        ErrorSerializer, description="a parameter is missing, unknown or invalid; it is named"
    ),
    **_REFUSED,
    404: OpenApiResponse(ErrorSerializer, description=NO_DATA),
    413: OpenApiResponse(
        ErrorSerializer,
        description="the estimate, within limit_packets, exceeds PAR_MAX_ANSWER_BYTES and no "
        "limit_bytes is set",
    ),
    503: OpenApiResponse(ErrorSerializer, description="a capture file could not be read"),
}


class DataPcapView(RecordPost, NodeView):
    query_params = PCAP_PARAMS

    @extend_schema(
        parameters=FLOW_PARAMETERS,
        summary="The packets the selectors name in a time window, as a pcap stream",
        description=PCAP_DESCRIPTION,
        responses=_PCAP_RESPONSES,
    )
    def get(self, request):
        selection, options = _parsed(request, PCAP_PARAMS, parse_answer_options)
        return pcap_response(selection, options)

    def head(self, request):
        """The headers the GET would answer, without running the query (no record is read)."""
        selection, options = _parsed(request, PCAP_PARAMS, parse_answer_options)
        files = captures_for_window(selection.start_ns, selection.end_ns, selection=selection, **_tree())
        if not files:
            raise NoData(selection)
        e = estimate(files, selection, pcapng=options.format == "pcapng").within(answer_limits(options))
        if _over_the_maximum(e, options):
            raise _too_large(e, selection)
        # Streaming, as the GET: no Content-Length of an empty body is claimed for the download.
        # The content type is the GET's unless mixed link types make its pcap a pcapng.
        content_type = PCAPNG_TYPE if options.format == "pcapng" else PCAP_TYPE
        response = StreamingHttpResponse((), content_type=content_type)
        pcap_headers(response, selection, e, content_type == PCAPNG_TYPE)
        # The damage the indexes record, named as the GET names it (damage only a read can find is not).
        names = [
            file.path.name for file in files if file.index is not None and file.index.damaged_at is not None
        ]
        if names:
            response["X-PAR-Damaged"] = ", ".join(dict.fromkeys(names))
        return response

    @extend_schema(
        request=RECORD_BODY,
        parameters=RECORD_WINDOW_PARAMETERS + ANSWER_PARAMETERS + PCAP_HEADERS + RECORD_HEADERS,
        summary="The packets of the flow a Suricata or Zeek record names, as a pcap stream",
        description=RECORD_DESCRIPTION,
        responses=_PCAP_RESPONSES,
    )
    def post(self, request):
        return self.answer_record(request)


def _parsed(request, known, read_options):
    """The request's selection and its answer options; FlowParamError names a bad parameter."""
    selection = parse_selection(
        request.query_params, utc=settings.PAR_UTC, max_window=settings.PAR_MAX_WINDOW, known=known
    )
    return selection, read_options(request.query_params)


def _tree() -> dict:
    """Where this node's capture files are, as the store's functions take it."""
    return {
        "filer_dir": settings.PAR_FILER_DIR,
        "capture_dir": settings.PAR_CAPTURE_DIR,
        "prefix": settings.PAR_FILE_PREFIX,
        "utc": settings.PAR_UTC,
    }


_FLOWS_RESPONSES: dict = {
    200: FlowsSerializer,
    (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="the rows as CSV"),
    400: OpenApiResponse(ErrorSerializer, description="a parameter is missing, unknown or invalid"),
    **_REFUSED,
    404: OpenApiResponse(ErrorSerializer, description=NO_DATA),
}


class FlowsView(RecordPost, NodeView):
    query_params = FLOWS_PARAMS

    @extend_schema(
        parameters=FLOWS_PARAMETERS,
        summary="The flows the selectors name in a time window, from the indexes",
        description=(
            "One row per flow with packets in the window, read from the capture files' indexes (files "
            "without one are read whole, with the same result). Counts cover the flow in the files that "
            "overlap the window; `approximate: true` marks a row whose flow has packets outside it. "
            "`src_*` is the end that sent the flow's first packet. `output=csv` gives the same rows "
            "as CSV (RFC 4180) with a header row."
        ),
        responses=_FLOWS_RESPONSES,
    )
    def get(self, request):
        selection, options = _parsed(request, FLOWS_PARAMS, parse_listing_options)
        files = captures_for_window(selection.start_ns, selection.end_ns, selection=selection, **_tree())
        if not files:
            raise NoData(selection)
        listing = list_flows(files, selection, sort=options.sort, limit=options.limit)
        for problem in listing.damaged:
            log.warning("flows %s: damaged capture data: %s", describe(selection), problem)
        if options.output == "csv":
            response = HttpResponse(columns_csv(listing.columns), content_type=CSV_TYPE)
            response["Content-Disposition"] = 'attachment; filename="flows.csv"'
        else:
            answer = flows_json(selection.start_ns, selection.end_ns, listing)
            response = HttpResponse(answer, content_type="application/json")
        if listing.damaged:
            response["X-PAR-Damaged"] = ", ".join(listing.damaged_names)
        return _with_window(response, selection)

    @extend_schema(
        request=RECORD_BODY,
        parameters=RECORD_WINDOW_PARAMETERS + LISTING_PARAMETERS + FLOWS_HEADERS + RECORD_HEADERS,
        summary="The flows of the flow a Suricata or Zeek record names, from the indexes",
        description=RECORD_DESCRIPTION,
        responses=_FLOWS_RESPONSES,
    )
    def post(self, request):
        return self.answer_record(request)


class AnswerTooLarge(Exception):
    """The estimate of an answer exceeds PAR_MAX_ANSWER_BYTES and the request sets no limit_bytes."""

    def __init__(self, estimate: Estimate):
        super().__init__(estimate)
        self.estimate = estimate


def _with_window(response: HttpResponseBase, query: Selection) -> HttpResponseBase:
    response["X-PAR-Window"] = window_text(query.start_ns, query.end_ns)
    return response


def answer_limits(options: AnswerOptions) -> Limits:
    """Where the answer ends: ``limit_packets``, and ``limit_bytes`` cut at PAR_MAX_ANSWER_BYTES.

    No request gets more than the maximum: without ``limit_bytes`` an estimate over it is a 413.
    """
    size = options.limit_bytes
    if size is not None:
        size = min(size, settings.PAR_MAX_ANSWER_BYTES)
    return Limits(options.limit_packets, size)


def _over_the_maximum(e: Estimate, options: AnswerOptions) -> bool:
    return e.bytes > settings.PAR_MAX_ANSWER_BYTES and options.limit_bytes is None


def _window_header(query: Selection) -> dict[str, str]:
    return {"X-PAR-Window": window_text(query.start_ns, query.end_ns)}


class NoData(ApiError):
    """The 404 of a window no capture file covers."""

    def __init__(self, query: Selection) -> None:
        super().__init__(NO_DATA, 404, _window_header(query))


def _too_large(e: Estimate, query: Selection) -> ApiError:
    message = too_large_message(e.bytes, e.packets, settings.PAR_MAX_ANSWER_BYTES)
    return ApiError(message, 413, _window_header(query), code="answer_too_large")


def pcap_response(query: Selection, options: AnswerOptions | None = None) -> HttpResponseBase:
    """The engine's answer as a streamed download; an unreadable capture is a JSON 503, before any byte.

    Every answer carries ``X-PAR-Window``; a 200 the index's estimate (``X-PAR-Estimate-*``).
    """
    options = options or AnswerOptions()
    pcapng = options.format == "pcapng"
    found: list[Estimate] = []
    reports: list[DamageReport] = []  # one per start (the store lists the window again, once)

    limits = answer_limits(options)

    def answer(files: list[CaptureFile]) -> Generator[bytes, None, None]:
        e = estimate(files, query, pcapng=pcapng).within(limits)
        found[:] = [e]
        if _over_the_maximum(e, options):
            raise AnswerTooLarge(e)
        reports.append(DamageReport())
        name = node_name() if pcapng else None
        return query_captures(files, query, limits=limits, pcapng_name=name, damage=reports[-1])

    try:
        started = start_answer(
            query.start_ns,
            query.end_ns,
            answer,
            selection=query,
            **_tree(),
        )
    except AnswerTooLarge as exc:
        raise _too_large(exc.estimate, query) from None
    except (OSError, CaptureError) as exc:
        log.error("cannot read capture data for %s: %s", describe(query), exc)
        why = "a capture file is damaged" if isinstance(exc, CaptureError) else exc.strerror or str(exc)
        raise ApiError(f"cannot read capture data: {why}", 503, _window_header(query)) from None
    if started is None:
        raise NoData(query)
    first, chunks = started
    content_type = PCAPNG_TYPE if first[:4] == b"\x0a\x0d\x0d\x0a" else PCAP_TYPE
    response = StreamingHttpResponse(stream(query, first, chunks), content_type=content_type)
    pcap_headers(response, query, found[0], content_type == PCAPNG_TYPE)
    damaged(response, reports[-1], query)
    return response


def damaged(response: HttpResponseBase, report: DamageReport, query: Selection) -> None:
    """Log each damaged file the answer read around (one line each) and name them in ``X-PAR-Damaged``."""
    for exc in report.found:
        log.warning("data.pcap %s: read up to the damage of %s", describe(query), exc)
    if report.found:
        response["X-PAR-Damaged"] = ", ".join(report.names)


def pcap_headers(response: StreamingHttpResponse, query: Selection, e: Estimate, pcapng: bool) -> None:
    """The headers of a pcap answer, the same for GET and HEAD."""
    response["Content-Disposition"] = f'attachment; filename="{pcap_filename(query, pcapng)}"'
    response["Cache-Control"] = "no-store"
    response["X-PAR-Estimate-Packets"] = str(e.packets)
    response["X-PAR-Estimate-Bytes"] = str(e.bytes)
    if e.unindexed:  # counted whole: the estimate is a loose bound until they are indexed
        response["X-PAR-Estimate-Unindexed"] = ", ".join(e.unindexed)
    _with_window(response, query)


def node_name() -> str:
    """The name of this node in a pcapng answer's interfaces: its host name."""
    return socket.gethostname()


def stream(query: Selection, first: bytes, chunks: Generator[bytes, None, None]) -> Iterator[bytes]:
    """Yield the answer; closing this generator (client gone) closes the engine's, which frees the files."""
    sent, started, outcome = 0, time.monotonic(), "stopped (client went away)"
    try:
        yield first
        sent += len(first)
        for chunk in GATE.chunks(chunks):
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


def _end_text(network, port) -> str:
    address = "any" if network is None else network.network_address if network.num_addresses == 1 else network
    return f"{address}:{'any' if port is None else port}"


def describe(query: Selection) -> str:
    """The selection in a log line: ``10.0.0.0/8:any<->192.0.2.7:443 proto=any [start, end]``."""
    text = f"{_end_text(query.src, query.src_port)}<->{_end_text(query.dst, query.dst_port)}"
    text += f" proto={'any' if query.proto is None else query.proto}"
    if query.community_id is not None:
        text += f" community_id={query.community_id}"
    return text + f" [{format_iso(query.start_ns, short=True)}, {format_iso(query.end_ns, short=True)}]"


def _safe_end(network, port) -> str:
    # Colons and slashes are not allowed in file names on some systems; a zone is never present (refused).
    if network is None:
        address = "any"
    elif network.num_addresses == 1:
        address = str(network.network_address)
    else:
        address = f"{network.network_address}-{network.prefixlen}"
    return f"{address.replace(':', '-')}_{'any' if port is None else port}"


def compact_time(ns: int) -> str:
    """``20150226T160000Z``, with the fraction when there is one (``...T160000.25Z``)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def pcap_filename(query: Selection, pcapng: bool = False) -> str:
    """``<src>_<sport>-<dst>_<dport>-<start>.pcap``: only letters, digits, ``.``, ``-`` and ``_``.

    An end not asked for is ``any``; a network is ``<address>-<prefix length>``.
    """
    name = f"{_safe_end(query.src, query.src_port)}-{_safe_end(query.dst, query.dst_port)}"
    return f"{name}-{compact_time(query.start_ns)}.{'pcapng' if pcapng else 'pcap'}"


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
    said = refused(request)
    if said is not None:
        return refusal_response(said, 403, "caller_refused")
    return api.docs.docs_asset(request, path)


def not_found(request, exception=None):
    """404 for an unknown path, but only to allowed callers: others learn nothing of the routes."""
    said = refused(request)
    if said is not None:
        return refusal_response(said, 403, "caller_refused")
    return error_response("not found", 404)
