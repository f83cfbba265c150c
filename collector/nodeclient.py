"""HTTP to the nodes: one pool of keep-alive connections per node, shared by a worker's threads.

A call takes an idle connection to its node from the pool (or opens one) and gives it back once
the node's answer has been read to its end; an answer left unread closes its connection. A pooled
connection the node has closed meanwhile (it restarted, or its keep-alive ran out) is seen before
use and replaced; one that dies as the request goes out, before any byte of an answer came back,
is retried once on a new connection, for GET and HEAD only. Timeouts, certificate checks and
"no redirects, no cookies, no proxy from the environment" hold for every call.

urllib3 directly rather than requests: the same pool underneath without requests' per-call
preparation (a quarter of a millisecond a call, a quarter of the collector's budget for one).
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator, Mapping
from urllib.parse import urlencode

import certifi
import urllib3
from urllib3.exceptions import ProtocolError

# Several downloads from one node at once each need a connection: a worker's threads may all be
# asking one node (gunicorn.conf.py: 32 threads), and connections beyond these are not kept.
CONNECTIONS_PER_NODE = 32
NODES_KEPT = 256
IDEMPOTENT = ("GET", "HEAD")
# How a connection the node dropped before answering shows: it never wrote a byte of a status line.
_DROPPED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _ca_bundle() -> str:
    """The CAs a node's certificate is checked against: REQUESTS_CA_BUNDLE, else certifi's."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()


def _new_pools() -> urllib3.PoolManager:
    # urllib3 reads no proxy or netrc from the environment and keeps no cookies: nodes are reached
    # directly, and a cookie one node sets is never sent back, to it or to another node.
    return urllib3.PoolManager(
        num_pools=NODES_KEPT,
        maxsize=CONNECTIONS_PER_NODE,
        block=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=_ca_bundle(),
        retries=False,
    )


_pools = _new_pools()


class NodeResponse:
    """A node's answer, its head read and its body not yet: status, headers, and the body once."""

    __slots__ = ("method", "raw")

    def __init__(self, method: str, raw: urllib3.BaseHTTPResponse) -> None:
        self.method = method
        self.raw = raw

    @property
    def status_code(self) -> int:
        return self.raw.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self.raw.headers  # case-insensitive, as the node's names are matched

    def stream(self, size: int) -> Iterator[bytes]:
        """The body as it arrives, in pieces of up to ``size`` bytes, exactly as the node sent it."""
        return self.raw.stream(size, decode_content=False)

    def close(self) -> None:
        """Give the connection back when the answer was read to its end, else close it."""
        raw = self.raw
        if not raw.closed and self.method == "HEAD":
            raw.read()  # a HEAD has no body: this ends the answer without waiting for anything
        if not raw.closed:
            raw.close()  # bytes left unread: the connection cannot carry another answer
        raw.release_conn()


def _dropped_before_answer(exc: ProtocolError) -> bool:
    cause = exc.args[1] if len(exc.args) > 1 else exc.__context__
    return isinstance(cause, _DROPPED)


def request(
    method: str,
    url: str,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str],
    connect_timeout: float,
    read_timeout: float,
) -> NodeResponse:
    """``method url?params`` with the body left unread; urllib3's errors (HTTPError) as they come.

    Redirects are not followed: whatever answers at a node's address must not send the collector,
    with the node secret, to another node or host.
    """
    if params:
        url = f"{url}?{urlencode(params)}"
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    for attempt in (1, 2):
        try:
            raw = _pools.urlopen(
                method,
                url,
                headers=dict(headers),
                timeout=timeout,
                redirect=False,
                retries=False,
                preload_content=False,
                release_conn=False,
            )
        except ProtocolError as exc:
            if attempt == 2 or method not in IDEMPOTENT or not _dropped_before_answer(exc):
                raise
            continue  # a kept connection the node had just closed: once more on a new one
        return NodeResponse(method, raw)
    raise AssertionError("unreachable")
