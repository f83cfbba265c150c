"""``POST /data.pcap`` and ``POST /flows`` of one record, on both roles (SPEC "From an alert to its packets").

A view mixes in ``RecordPost`` and answers its POST with ``answer_record``: the record becomes the
GET's query (``api.records``), the query string adds ``node_id``, ``format``, limits, and may
override ``start_time``/``end_time``; the view's own GET then answers it, so the answer is exactly
the GET's. Every answer to a record carries ``X-PAR-Query``, that GET's query string (the key left
out), and ``X-PAR-Query-Note`` when the record's Community ID was replaced.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlencode

from django.http import QueryDict
from django.http.request import RawPostDataException
from rest_framework import exceptions

from api.flowparams import SELECTORS, TIME_PARAMS
from api.records import MAX_RECORD_BYTES, RecordError, RecordQuery, record_query, time_fields

QUERY_HEADER = "X-PAR-Query"
NOTE_HEADER = "X-PAR-Query-Note"
SECRET_PARAMS = ("api_key",)


class RecordTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "record_too_large"


def _body(request) -> bytes:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not (length.isascii() and length.isdigit()):
        raise exceptions.ValidationError("invalid Content-Length")
    if int(length) > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"record too large: at most {MAX_RECORD_BYTES} bytes")
    try:
        return request._request.body
    except RawPostDataException:
        raise exceptions.ValidationError(
            "send the record itself as the body (Content-Type: application/json)"
        ) from None
    except OSError:
        raise exceptions.ValidationError("the body could not be read: send one record") from None


def record_params(request) -> tuple[QueryDict, RecordQuery]:
    """The GET's parameters for the POSTed record and the request's query string; a 400 saying what is wrong."""
    try:
        asked = record_query(_body(request))
    except RecordError as exc:
        raise exceptions.ValidationError(str(exc)) from None
    given = request.query_params
    named = [name for name in given if name in SELECTORS]
    if named:
        raise exceptions.ValidationError(
            f"{', '.join(named)}: the record names the flow; a POST takes node_id, the window and the "
            "answer's options in its query string"
        )
    params = QueryDict(mutable=True)
    selectors = [name for name in asked.params if name not in TIME_PARAMS]
    for name in ("node_id", *selectors, *TIME_PARAMS):  # in the GET's order
        if name in given:
            params.setlist(name, given.getlist(name))
        elif name in asked.params:
            params[name] = asked.params[name]
    for name in given:
        if name not in params:
            params.setlist(name, given.getlist(name))
    if not params.get("start_time", "").strip():
        raise exceptions.ValidationError(
            f"the record has no time ({time_fields(asked.kind)}): give start_time in the query string"
        )
    params._mutable = False
    return params, asked


def query_string(params: QueryDict) -> str:
    """The GET's query string, as ``X-PAR-Query`` shows it: every parameter but the key."""
    pairs = [
        (name, value) for name, values in params.lists() if name not in SECRET_PARAMS for value in values
    ]
    return urlencode(pairs, safe=":,")


def _keep_body(request) -> None:
    """Read a bounded body before anything parses it: DRF's CSRF check of a session reads the stream."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isascii() and length.isdigit() and int(length) <= MAX_RECORD_BYTES:
        # An unreadable body is refused when the record is read.
        with contextlib.suppress(Exception):
            request._request.body  # noqa: B018  (Django keeps it; later reads are of the copy)


class RecordPost:
    """A view whose POST takes one Suricata or Zeek record and answers as its GET does."""

    def initial(self, request, *args, **kwargs):
        if request.method == "POST":
            _keep_body(request)
        super().initial(request, *args, **kwargs)

    def answer_record(self, request, *args, **kwargs):
        params, asked = record_params(request)
        request._request.GET = params  # the GET's handler reads the query the record stands for
        self.record_headers = {QUERY_HEADER: query_string(params)}
        if asked.note:
            self.record_headers[NOTE_HEADER] = asked.note
        self.record_asked(request)
        return self.get(request, *args, **kwargs)

    def record_asked(self, request) -> None:
        """Called once the request's query is the record's: a view notes it where it must."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in getattr(self, "record_headers", {}).items():
            response[name] = value
        return response
