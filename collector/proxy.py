"""Calls from the collector to one node: timeouts, error mapping, and a pcap answer opened before replying.

A pcap answer is "opened" when the node said 200 with a capture type and its first bytes
have arrived: only then does the client get its 200 (so a node failing before its first
byte is a 502/504 like any node failure, never a bare 500 after the headers).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3.exceptions
from django.conf import settings
from rest_framework import exceptions
from rest_framework.response import Response

from collector import nodeclient
from collector.limits import STREAM_RENEW
from collector.metrics import node_answered, proxy_failed
from collector.models import Node
from collector.nodeclient import NodeResponse

log = logging.getLogger("collector.proxy")

CHUNK = 64 * 1024
STREAM_CHUNK = 1 << 20  # a pcap relayed from a node: read in large pieces, few Python steps a megabyte
# A node's JSON answers (ping, status, routes, plugins) are small; a bigger one is a broken node.
MAX_JSON = 8 * 1024 * 1024
NODE_PROBLEM = "there was a problem requesting from the node"
# A node's 403 refuses the collector, not the analyst: a configuration fault between the two.
NODE_REFUSED_COLLECTOR = "the node refused this collector (check PAR_NODE_ALLOW and PAR_NODE_SECRET)"
# Response headers of a node's pcap that the client gets too.
CAPTURE_TYPES = ("application/vnd.tcpdump.pcap", "application/x-pcapng", "application/octet-stream")
PASSED_HEADERS = ("Content-Type", "Content-Disposition", "Content-Length", "Cache-Control")
ESTIMATE_HEADERS = ("X-PAR-Estimate-Packets", "X-PAR-Estimate-Bytes")
UNINDEXED = "X-PAR-Estimate-Unindexed"  # the files a node counted whole in its estimate
PAR_HEADERS = (*ESTIMATE_HEADERS, UNINDEXED, "X-PAR-Window", "X-PAR-Damaged")
# A header a node sends is passed on only when its value has this shape: the client's server
# (gunicorn) refuses an answer whose header holds a control character, after the view has run.
_VISIBLE = re.compile(r"[ -~]*").fullmatch
_HEADER_SHAPES = {
    "Content-Length": re.compile(r"[0-9]{1,19}").fullmatch,
    "X-PAR-Estimate-Packets": re.compile(r"[0-9]{1,19}").fullmatch,
    "X-PAR-Estimate-Bytes": re.compile(r"[0-9]{1,19}").fullmatch,
    "Content-Disposition": re.compile(r'attachment; filename="[A-Za-z0-9._-]{1,200}"').fullmatch,
}


def safe_header_value(value: str) -> bool:
    """Whether ``value`` may travel in a header of ours: visible ASCII and spaces only."""
    return _VISIBLE(value) is not None


def node_header(node: Node, headers: Mapping[str, str], name: str) -> str | None:
    """Header ``name`` of a node's answer when it has the shape it must have; None when absent or not."""
    value = headers.get(name)
    if value is None:
        return None
    shape = _HEADER_SHAPES.get(name, _VISIBLE)
    if shape(value) is None:
        log.warning("node %s sent a malformed %s header: not passed on", node.id, name)
        return None
    return value


class NodeUnreachable(exceptions.APIException):
    status_code = 502
    default_detail = NODE_PROBLEM
    default_code = "node_unreachable"
    reason = "unreachable"


class NodeTimeout(exceptions.APIException):
    status_code = 504
    default_detail = NODE_PROBLEM
    default_code = "node_timeout"
    reason = "timed out"


class NodeSaid(exceptions.APIException):
    """A node's own 4xx refusal (its JSON error), passed on with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status
        self.reason = message


NodeFailure = NodeUnreachable | NodeTimeout | NodeSaid


class NodeFailedMidStream(Exception):
    """The node stopped sending before the end of its answer; the client's response is aborted."""


def node_headers() -> dict[str, str]:
    headers = {"Accept-Encoding": "identity"}  # bytes pass through exactly as the node sends them
    if settings.PAR_NODE_SECRET:
        headers["X-PAR-Node-Secret"] = settings.PAR_NODE_SECRET
    return headers


def is_timeout(exc: BaseException) -> bool:
    """Whether a transport error is a node that took too long (504), rather than a broken one (502)."""
    for error in (exc, getattr(exc, "__context__", None)):
        # urllib3 counts a refused connection among its connect timeouts: it is a broken node here.
        if isinstance(error, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(error, (urllib3.exceptions.TimeoutError, socket.timeout, TimeoutError)):
            return True
    return False


def node_get(
    node: Node, path: str, params: Mapping[str, str] | None = None, method: str = "GET"
) -> NodeResponse:
    """``method`` ``path`` on ``node`` with the body left unread; 502/504 APIException when it cannot."""
    try:
        answer = nodeclient.request(
            method,
            node.url(path),
            params,
            node_headers(),
            settings.PAR_NODE_CONNECT_TIMEOUT,
            settings.PAR_NODE_READ_TIMEOUT,
        )
        if answer.status_code < 500 and answer.status_code != 403:  # it answered, and judged the call
            node_answered(node.id)
        return answer
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if is_timeout(exc):
            log.warning("node %s (%s) timed out on /%s", node.id, node.address, path)
            proxy_failed(node.id, "timeout")
            raise NodeTimeout()
        log.warning("node %s (%s) unreachable on /%s: %s", node.id, node.address, path, type(exc).__name__)
        proxy_failed(node.id, "unreachable")
        raise NodeUnreachable()


def _read_json(node: Node, answer: NodeResponse) -> object:
    body = bytearray()
    try:
        for chunk in answer.stream(CHUNK):
            body += chunk
            if len(body) > MAX_JSON:
                raise NodeUnreachable(f"{NODE_PROBLEM}: its answer is too large")
        # The body was read above, in bounded chunks: parse those bytes, not the spent stream.
        return json.loads(body) if body else None
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # cut, reset, read timeout
        raise NodeTimeout() if is_timeout(exc) else NodeUnreachable()
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
        log.warning("node %s answered %s with a body that is not JSON", node.id, answer.status_code)
        raise NodeUnreachable(f"{NODE_PROBLEM}: its answer is not JSON")
    finally:
        answer.close()


def node_error(node: Node, answer: NodeResponse) -> NodeFailure:
    """A node's refusal: its 4xx JSON error with its status; a 403 or anything else is a 502."""
    if answer.status_code == 403:
        answer.close()  # whatever it says (JSON, or a proxy's page), the node logs why it refused
        log.error("node %s (%s) answered 403: it refused this collector", node.id, node.address)
        proxy_failed(node.id, "refused")
        return NodeUnreachable(NODE_REFUSED_COLLECTOR)
    if answer.method == "HEAD":
        answer.close()
        if 400 <= answer.status_code < 500:
            return NodeSaid(answer.status_code, f"the node answered {answer.status_code}")
        return NodeUnreachable(f"{NODE_PROBLEM}: it answered {answer.status_code}")
    try:
        body = _read_json(node, answer)
    except (NodeUnreachable, NodeTimeout) as exc:
        return exc
    said = body.get("error") if isinstance(body, dict) else None
    if 400 <= answer.status_code < 500 and isinstance(said, str):
        return NodeSaid(answer.status_code, said)
    log.warning("node %s answered %s: %s", node.id, answer.status_code, said)
    proxy_failed(node.id, "error")
    return NodeUnreachable(
        f"{NODE_PROBLEM}: it answered {answer.status_code}" + (f" ({said})" if said else "")
    )


def node_json(node: Node, path: str, params: Mapping[str, str] | None = None) -> Response:
    """The node's JSON answer to ``path``, with its status."""
    answer = node_get(node, path, params)
    if answer.status_code >= 300:  # a redirect is not followed: a 502 saying so
        raise node_error(node, answer)  # a node's own refusal passes on with its status and message
    return Response(_read_json(node, answer), status=answer.status_code)


@dataclass
class NodeAnswer:
    """A node's pcap answer, opened: its response, the bytes read so far, and the rest to come."""

    node: Node
    response: NodeResponse
    first: bytes = b""
    rest: Iterator[bytes] = field(default_factory=lambda: iter(()))
    received: int = 0
    failure: str = ""  # why it stopped before its end, if it did
    reader: Any = None  # to merge: the engine's StreamReader over ``chunks()``

    @property
    def headers(self) -> Mapping[str, str]:
        return self.response.headers

    def chunks(self) -> Iterator[bytes]:
        """Every byte of the body, the first chunk included, counting what was received."""
        if self.first:
            first, self.first = self.first, b""
            self.received += len(first)
            yield first
        for chunk in self.rest:
            self.received += len(chunk)
            yield chunk

    def close(self) -> None:
        self.response.close()


def open_pcap(node: Node, path: str, params: Mapping[str, str], method: str = "GET") -> NodeAnswer:
    """Ask ``node`` for a pcap and wait for its first bytes; a NodeFailure (APIException) when it cannot."""
    response = node_get(node, path, params, method)
    if response.status_code != 200:
        raise node_error(node, response)
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type not in CAPTURE_TYPES:
        response.close()
        log.warning("node %s answered 200 with %r instead of a capture", node.id, media_type)
        raise NodeUnreachable(f"{NODE_PROBLEM}: its answer is not a pcap")
    answer = NodeAnswer(node, response)
    if method == "HEAD":
        response.close()
        return answer
    answer.rest = response.stream(STREAM_CHUNK)
    try:
        answer.first = next(answer.rest, b"")
    except Exception as exc:  # urllib3 errors: cut, reset, read timeout
        response.close()
        log.warning("node %s failed before its first byte: %s", node.id, type(exc).__name__)
        proxy_failed(node.id, "timeout" if is_timeout(exc) else "unreachable")
        raise NodeTimeout() if is_timeout(exc) else NodeUnreachable()
    if not answer.first:
        response.close()
        log.warning("node %s answered 200 without a body", node.id)
        raise NodeUnreachable(f"{NODE_PROBLEM}: its answer is empty")
    return answer


class Download:
    """The body the client gets, chunk by chunk, with the request log finished exactly once at its end.

    ``bytes_sent`` counts a chunk once the server asks for the next one: a WSGI server
    writes each chunk to the socket before it asks again, so the count is what reached the
    client's socket (the kernel's buffer), not what was handed over and then lost.
    """

    def __init__(self, chunks: Iterator[bytes], entry, answers: list[NodeAnswer]) -> None:
        self.chunks = chunks
        self.entry = entry
        self.answers = answers
        self.bytes_sent = 0
        self.error = ""
        self.finished = False
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        renew_at = time.monotonic() + STREAM_RENEW
        try:
            for chunk in self.chunks:
                yield chunk
                self.bytes_sent += len(chunk)
                if self.entry.stream_slot is not None and time.monotonic() > renew_at:
                    self.entry.stream_slot.renew()
                    renew_at = time.monotonic() + STREAM_RENEW
        except NodeFailedMidStream as exc:
            self.error = str(exc)
            self.close()
            # Raising makes the WSGI server drop the connection: the client sees an
            # incomplete response, never a shorter pcap with a 200.
            raise
        self.finished = True
        # Its slot is free as the last byte goes out; its row is written by close(), which the WSGI
        # server calls once it has sent the answer's end: the client does not wait for the row.
        self.entry.release_slot()

    def close(self) -> None:
        if self._ended:
            return
        self._ended = True
        for answer in self.answers:
            answer.close()
        if not self.finished and not self.error:
            self.error = "client went away"
        try:
            for answer in self.answers:
                self.entry.node_answered(answer.node.id, 200, answer.received, answer.failure)
            self.entry.finish(200, self.bytes_sent, self.error)
        except Exception:
            # The WSGI close() swallows exceptions; make this one visible.
            log.exception("could not record the end of a download")


def passthrough(answer: NodeAnswer) -> Iterator[bytes]:
    """One node's body as it sends it; a transport error is NodeFailedMidStream."""
    try:
        yield from answer.chunks()
    except Exception as exc:  # urllib3 errors: cut, reset, read timeout
        answer.failure = f"failed mid-stream: {type(exc).__name__}"
        log.warning("node %s failed after %d bytes: %s", answer.node.id, answer.received, type(exc).__name__)
        proxy_failed(answer.node.id, "mid-stream")
        raise NodeFailedMidStream(
            f"node failed mid-stream: node {answer.node.id} after {answer.received} bytes"
        ) from None
