"""The exports API (SPEC "Exports"): start a job, list and follow jobs, download, cancel or delete.

POST /exports validates, authorises and logs exactly as /data.pcap does (it is a LoggedQueryView);
a holder sees only its own jobs (an admin every job): another's id is a 404.
"""

from __future__ import annotations

import contextlib
import logging
import os

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from api.client import client_ip
from api.errors import too_large_message
from api.flowparams import FLOW_PARAMS, window_text
from api.serializers import ErrorSerializer
from collector.auth import HasNodeGrant, HasValidKey, request_key
from collector.fanout import AnswerTooLarge, ask_nodes, every_node_failed, summed_estimate
from collector.jobs import tasks
from collector.jobs.download import FileBody, RangeNotSatisfiable, Span, asked_span
from collector.jobs.model import ACTIVE, LIVE, Export, State
from collector.jobs.request import parsed_request, request_digest
from collector.models import RequestLog
from collector.proxy import NodeSaid
from collector.selection import PASSED_PARAMS, parse_flow, requested_nodes, resolve_nodes, take_download_slot
from collector.serializers import API_KEY_PARAM, DATA_PCAP_PARAMS, ERRORS, NODE_ERRORS
from collector.views import CollectorView, LoggedQueryView

log = logging.getLogger("collector.jobs")

EXPORT = OpenApiResponse(OpenApiTypes.OBJECT, description="the job: {id, state, query, nodes, packets, ...}")
EXPORTS = OpenApiResponse(OpenApiTypes.OBJECT, description="{exports: [job, ...]}, newest first")
LIST_MAX = 500


class TooManyExports(exceptions.APIException):
    status_code = 429
    default_code = "too_many_exports"


class QueueUnavailable(exceptions.APIException):
    status_code = 503
    default_code = "queue_unavailable"


def visible_export(request, export_id: int) -> Export:
    try:
        return Export.objects.visible_to(request.auth).get(pk=export_id)
    except Export.DoesNotExist:
        raise exceptions.NotFound("no such export") from None


class ExportsView(LoggedQueryView):
    """POST: start an export of what /data.pcap would answer. GET: this key's exports."""

    log_view = "export"
    parser_classes = [FormParser, MultiPartParser]
    query_params = ("node_id", *FLOW_PARAMS, *PASSED_PARAMS, "api_key")

    def get_permissions(self):
        if self.request.method == "POST":
            return [HasValidKey(), HasNodeGrant()]
        return [HasValidKey()]

    def params(self, request) -> dict[str, str]:
        """The query string and, for a POST, the form: the parameters of a /data.pcap."""
        if not hasattr(self, "_params"):
            merged = dict(request.query_params.items())
            if request.method == "POST":
                merged.update({k: str(v) for k, v in request.data.items()})
            self._params = merged
        return self._params

    def initial(self, request, *args, **kwargs):
        if request.method != "POST":  # a listing is not a query of the nodes: no request-log row
            return CollectorView.initial(self, request, *args, **kwargs)
        ip = client_ip(request)
        self.entry = RequestLog.begin(self.log_view, method="POST", client_ip=ip and str(ip), query={})
        with contextlib.suppress(exceptions.APIException):  # refused below, when DRF parses the body again
            self.entry.query = RequestLog.begin("", query=self.params(request)).query
        CollectorView.initial(self, request, *args, **kwargs)

    def perform_authentication(self, request) -> None:
        CollectorView.perform_authentication(self, request)
        key = request_key(request)
        if key is not None and hasattr(self, "entry"):
            self.entry.by(*key.log_identity())

    def requested_node_ids(self, request) -> list[int] | None:
        if not hasattr(self, "_node_ids"):
            self._node_ids = requested_nodes(self.params(request))
        return self._node_ids

    @extend_schema(
        operation_id="exports_list",
        responses={200: EXPORTS, **ERRORS},
        parameters=[API_KEY_PARAM],
        summary="This key's exports (an admin key: every export), newest first",
    )
    def get(self, request):
        jobs = Export.objects.visible_to(request.auth)[:LIST_MAX]
        return Response({"exports": [job.to_dict() for job in jobs]})

    @extend_schema(
        operation_id="exports_create",
        request=None,
        responses={
            202: EXPORT,
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="the same query's job, already there"),
            400: ErrorSerializer,
            413: OpenApiResponse(ErrorSerializer, description="estimated over PAR_EXPORT_MAX_BYTES"),
            503: OpenApiResponse(ErrorSerializer, description="the job queue cannot be reached"),
            **NODE_ERRORS,
        },
        parameters=DATA_PCAP_PARAMS,
        summary="Start an export: what /data.pcap would answer, written to a file by a job",
    )
    def post(self, request):
        params = self.params(request)
        grant = request.auth
        nodes = resolve_nodes(grant, self.requested_node_ids(request))
        self.entry.asked(node.id for node in nodes)
        flow = parse_flow(params)
        self.entry.describe(flow)
        self.window = window_text(flow.start_ns, flow.end_ns)
        asked = parsed_request(nodes, flow, params)
        digest = request_digest(asked)
        existing = self.existing(grant.holder, digest)
        if existing is not None:
            return self.job_answer(existing, 200)
        if Export.objects.filter(holder=grant.holder, state__in=ACTIVE).count() >= settings.PAR_KEY_EXPORTS:
            raise TooManyExports(
                f"this API key already has {settings.PAR_KEY_EXPORTS} exports queued or running"
                " (PAR_KEY_EXPORTS): wait for one to end, or cancel one"
            )
        estimate = self.estimate(nodes, asked)
        export = Export(
            holder=grant.holder,
            key_prefix=self.entry.key_prefix,
            user=self.entry.user,
            query=self.entry.query,
            request=asked,
            query_hash=digest,
            estimate=estimate,
        )
        try:
            with transaction.atomic():
                export.save(force_insert=True)
        except IntegrityError:  # the same query, asked twice at once: the other one won
            existing = self.existing(grant.holder, digest)
            if existing is None:
                raise
            return self.job_answer(existing, 200)
        try:
            tasks.enqueue(export.pk)
        except Exception as exc:
            log.error("export %s: could not be queued: %s", export.pk, type(exc).__name__)
            export.fail("the job queue could not be reached")
            raise QueueUnavailable("the job queue could not be reached: try again later") from None
        return self.job_answer(export, 202)

    def existing(self, holder: str, digest: str) -> Export | None:
        export = Export.objects.filter(holder=holder, query_hash=digest, state__in=LIVE).first()
        if (
            export is not None
            and export.state == State.DONE
            and export.expires
            and export.expires <= timezone.now()
        ):
            export.expire()  # its time is up: the sweep would expire it within a minute anyway
            return None
        return export

    def estimate(self, nodes, asked) -> int | None:
        """The nodes' estimate of the answer, in bytes; a 413 over PAR_EXPORT_MAX_BYTES (without limit_bytes)."""
        maximum = settings.PAR_EXPORT_MAX_BYTES
        wanted = asked["params"].get("limit_bytes")
        head = {**asked["params"], "limit_bytes": wanted or str(maximum)}
        answers, failures = ask_nodes(nodes, "data.pcap", head, "HEAD")
        for answer in answers:
            answer.close()
            self.entry.node_answered(answer.node.id, 200)
        for node, failure in failures:
            status = failure.status_code if isinstance(failure, NodeSaid) else None
            self.entry.node_answered(node.id, status, 0, str(failure.reason))
        if not answers:
            raise every_node_failed(failures)
        if wanted is None:
            self.check_node_parts(answers)
        total = summed_estimate(answers)
        if total is None:
            return None
        if wanted is None and total[1] > maximum:
            message = too_large_message(total[1], total[0], maximum).replace(
                "PAR_MAX_ANSWER_BYTES", "PAR_EXPORT_MAX_BYTES"
            )
            raise AnswerTooLarge(message)
        return min(total[1], int(wanted)) if wanted else total[1]

    def check_node_parts(self, answers) -> None:
        """A node ends any answer at its PAR_MAX_ANSWER_BYTES: a part estimated over it is a 413, not a cut file."""
        maximum = settings.PAR_MAX_ANSWER_BYTES  # the nodes' own, as deployed alike (docs/exports.md)
        for answer in answers:
            value = answer.headers.get("X-PAR-Estimate-Bytes", "")
            if value.isdigit() and int(value) > maximum:
                raise AnswerTooLarge(
                    f"node {answer.node.id}'s part is estimated at {value} bytes, more than a node sends in one"
                    f" answer (PAR_MAX_ANSWER_BYTES, {maximum}): raise it on the nodes and the collector,"
                    " or narrow the selectors or the window"
                )

    def job_answer(self, export: Export, status: int) -> Response:
        response = Response(export.to_dict(), status=status)
        response["Location"] = f"/exports/{export.pk}"
        return response


class ExportView(CollectorView):
    """One export: GET its state and progress; DELETE cancels it, or deletes its file."""

    @extend_schema(
        responses={200: EXPORT, 404: ErrorSerializer, **ERRORS},
        parameters=[API_KEY_PARAM],
        summary="An export's state, progress and download",
    )
    def get(self, request, export_id: int):
        return Response(visible_export(request, export_id).to_dict())

    @extend_schema(
        responses={204: None, 404: ErrorSerializer, **ERRORS},
        parameters=[API_KEY_PARAM],
        summary="Cancel a queued or running export, or delete a finished one's file",
    )
    def delete(self, request, export_id: int):
        visible_export(request, export_id).cancel_or_delete()
        return Response(status=204)


class ExportDataView(CollectorView):
    """A finished export's file: Range answered with 206, ETag its sha256; logged like /data.pcap."""

    @extend_schema(
        responses={
            (200, "application/vnd.tcpdump.pcap"): OpenApiResponse(OpenApiTypes.BINARY),
            (206, "application/vnd.tcpdump.pcap"): OpenApiResponse(OpenApiTypes.BINARY),
            404: ErrorSerializer,
            409: OpenApiResponse(ErrorSerializer, description="the export is not done"),
            410: OpenApiResponse(ErrorSerializer, description="the export's file was deleted or expired"),
            416: ErrorSerializer,
            **ERRORS,
        },
        parameters=[API_KEY_PARAM],
        summary="A finished export's file (Range, If-Range, ETag)",
    )
    def get(self, request, export_id: int):
        export = visible_export(request, export_id)
        if export.state in (State.DELETED, State.EXPIRED):
            return Response({"error": f"this export's file was {export.state}"}, status=410)
        if export.state != State.DONE or export.path is None:
            return Response({"error": f"this export is {export.state}, not done"}, status=409)
        try:
            fd = os.open(export.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return Response({"error": "this export's file is gone"}, status=410)
        size = os.fstat(fd).st_size
        etag = f'"{export.sha256}"'
        asked = request.headers.get("Range", "")
        if_range = request.headers.get("If-Range", "").strip()
        if if_range and if_range != etag:
            asked = ""  # the file changed since the client's part: the whole file
        try:
            span = asked_span(asked, size)
        except RangeNotSatisfiable:
            os.close(fd)
            answer = HttpResponse(status=416)
            answer["Content-Range"] = f"bytes */{size}"
            return answer
        entry = self.log_entry(request, export)
        try:
            entry.hold(take_download_slot(request.auth.holder))
        except exceptions.APIException as exc:
            os.close(fd)
            entry.finish(exc.status_code, 0, str(exc.detail))
            raise
        status = 200 if span is None else 206
        span = span or Span(0, size - 1)
        body = FileBody(fd, span, entry, status)
        response = StreamingHttpResponse(body, status=status, content_type=export.content_type)
        response["Content-Length"] = str(max(span.length, 0))
        if status == 206:
            response["Content-Range"] = f"bytes {span.start}-{span.end}/{size}"
        response["Accept-Ranges"] = "bytes"
        response["ETag"] = etag
        response["X-PAR-SHA256"] = export.sha256
        response["Content-Disposition"] = f'attachment; filename="{export.file_name}"'
        response["Cache-Control"] = "private, no-store"
        return response

    def log_entry(self, request, export: Export) -> RequestLog:
        ip = client_ip(request)
        entry = RequestLog.begin(
            "export", method="GET", client_ip=str(ip) if ip else None, query={"export": export.pk}
        )
        entry.by(*request.auth.log_identity())
        entry.asked(export.request["nodes"])
        entry.outcomes = []
        return entry
