"""Calls from the collector to its nodes: timeouts, error mapping, and streaming pcaps through."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from http.cookiejar import DefaultCookiePolicy

import requests
from django.conf import settings
from django.http import StreamingHttpResponse
from rest_framework import exceptions
from rest_framework.response import Response

from collector.metrics import proxy_failed
from collector.models import Node

log = logging.getLogger("collector.proxy")

CHUNK = 64 * 1024
# A node's JSON answers (ping, status, routes, plugins) are small; a bigger one is a broken node.
MAX_JSON = 8 * 1024 * 1024
NODE_PROBLEM = "there was a problem requesting from the node"
# A node's 403 refuses the collector, not the analyst: a configuration fault between the two.
NODE_REFUSED_COLLECTOR = "the node refused this collector (check PAR_NODE_ALLOW and PAR_NODE_SECRET)"
# Response headers of a node's pcap that the client gets too.
CAPTURE_TYPES = ("application/vnd.tcpdump.pcap", "application/x-pcapng", "application/octet-stream")
PASSED_HEADERS = ("Content-Type", "Content-Disposition", "Content-Length", "Cache-Control")


class NodeUnreachable(exceptions.APIException):
    status_code = 502
    default_detail = NODE_PROBLEM
    default_code = "node_unreachable"


class NodeTimeout(exceptions.APIException):
    status_code = 504
    default_detail = NODE_PROBLEM
    default_code = "node_timeout"


class NodeFailedMidStream(Exception):
    """The node stopped sending before the end of its answer; the client's response is aborted."""


def _new_session() -> requests.Session:
    session = requests.Session()
    # Nodes are reached directly: no proxy or netrc from the environment.
    session.trust_env = False
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or True
    # One session serves every thread and every node: a cookie one node sets must never be sent
    # back, to it or to another node, on behalf of another caller.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


_session = _new_session()


def _headers() -> dict[str, str]:
    headers = {"Accept-Encoding": "identity"}  # bytes pass through exactly as the node sends them
    if settings.PAR_NODE_SECRET:
        headers["X-PAR-Node-Secret"] = settings.PAR_NODE_SECRET
    return headers


def node_get(node: Node, path: str, params: Mapping[str, str] | None = None) -> requests.Response:
    """GET ``path`` on ``node`` with the body left unread; 502/504 APIException when it cannot."""
    timeout = (settings.PAR_NODE_CONNECT_TIMEOUT, settings.PAR_NODE_READ_TIMEOUT)
    try:
        # Redirects are not followed: whatever answers at a node's address must not send the
        # collector, with the node secret, to another node or host.
        return _session.get(
            node.url(path),
            params=params,
            headers=_headers(),
            timeout=timeout,
            stream=True,
            allow_redirects=False,
        )
    except requests.Timeout:
        log.warning("node %s (%s) timed out on /%s", node.id, node.address, path)
        proxy_failed(node.id, "timeout")
        raise NodeTimeout()
    except requests.RequestException as exc:
        log.warning("node %s (%s) unreachable on /%s: %s", node.id, node.address, path, type(exc).__name__)
        proxy_failed(node.id, "unreachable")
        raise NodeUnreachable()


def _read_json(node: Node, answer: requests.Response) -> object:
    body = bytearray()
    try:
        for chunk in answer.iter_content(CHUNK):
            body += chunk
            if len(body) > MAX_JSON:
                raise NodeUnreachable(f"{NODE_PROBLEM}: its answer is too large")
        # The body was read above, in bounded chunks: parse those bytes, not the spent stream.
        return json.loads(body) if body else None
    except requests.Timeout:
        raise NodeTimeout()
    except requests.RequestException:
        raise NodeUnreachable()
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
        log.warning("node %s answered %s with a body that is not JSON", node.id, answer.status_code)
        raise NodeUnreachable(f"{NODE_PROBLEM}: its answer is not JSON")
    finally:
        answer.close()


def node_error(node: Node, answer: requests.Response) -> Response:
    """A node's refusal: its 4xx JSON error with its status; a 403 or anything else is a 502."""
    if answer.status_code == 403:
        answer.close()  # whatever it says (JSON, or a proxy's page), the node logs why it refused
        log.error("node %s (%s) answered 403: it refused this collector", node.id, node.address)
        proxy_failed(node.id, "refused")
        raise NodeUnreachable(NODE_REFUSED_COLLECTOR)
    body = _read_json(node, answer)
    said = body.get("error") if isinstance(body, dict) else None
    if 400 <= answer.status_code < 500 and isinstance(said, str):
        return Response({"error": said}, status=answer.status_code)
    log.warning("node %s answered %s: %s", node.id, answer.status_code, said)
    proxy_failed(node.id, "error")
    raise NodeUnreachable(
        f"{NODE_PROBLEM}: it answered {answer.status_code}" + (f" ({said})" if said else "")
    )


def node_json(node: Node, path: str) -> Response:
    """The node's JSON answer to ``path``, with its status."""
    answer = node_get(node, path)
    if answer.status_code >= 300:  # a redirect is not followed: a 502 saying so
        return node_error(node, answer)
    return Response(_read_json(node, answer), status=answer.status_code)


class NodeStream:
    """The body of a node's answer, chunk by chunk, reporting how it ended exactly once.

    ``on_end(bytes_sent, error)`` runs when the stream is exhausted, fails or is
    closed by the server (the client went away); ``error`` is empty on success.
    """

    def __init__(self, node: Node, answer: requests.Response, on_end: Callable[[int, str], None]) -> None:
        self.node = node
        self.answer = answer
        self.on_end = on_end
        self.bytes_sent = 0
        self.error = ""
        self.finished = False
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.answer.raw.stream(CHUNK, decode_content=False):
                self.bytes_sent += len(chunk)
                yield chunk
        except Exception as exc:  # urllib3 errors: cut, reset, read timeout
            self.error = f"node failed mid-stream: {type(exc).__name__}"
            log.warning(
                "node %s failed after %d bytes: %s", self.node.id, self.bytes_sent, type(exc).__name__
            )
            proxy_failed(self.node.id, "mid-stream")
            self.close()
            # Raising makes the WSGI server abort the connection: the client sees
            # an incomplete response, never a shorter pcap with a 200.
            raise NodeFailedMidStream(f"node {self.node.id} failed after {self.bytes_sent} bytes") from None
        self.finished = True
        self.close()

    def close(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.answer.close()
        if not self.finished and not self.error:
            self.error = "client went away"
        try:
            self.on_end(self.bytes_sent, self.error)
        except Exception:
            # The WSGI close() swallows exceptions; make this one visible.
            log.exception("could not record the end of a stream from node %s", self.node.id)


def stream_from(
    node: Node, path: str, params: Mapping[str, str], on_end: Callable[[int, str], None]
) -> StreamingHttpResponse:
    """The node's answer streamed to the client (its JSON error passed through if it refuses)."""
    answer = node_get(node, path, params)
    if answer.status_code != 200:
        return node_error(node, answer)
    media_type = answer.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type not in CAPTURE_TYPES:
        answer.close()
        log.warning("node %s answered 200 with %r instead of a capture", node.id, media_type)
        raise NodeUnreachable(f"{NODE_PROBLEM}: its answer is not a pcap")
    response = StreamingHttpResponse(NodeStream(node, answer, on_end), status=200)
    for name in PASSED_HEADERS:
        if name in answer.headers:
            response[name] = answer.headers[name]
    return response
