"""The request log: one row per /data.pcap or /flows asked, with every node asked and how each answered.

Its bookkeeping lives here: a view calls ``RequestLog.begin(...)`` when the request
arrives (nothing is written), notes what was asked and how each node answered, and
``finish(...)`` writes the one row when the answer is complete, refused or cut: after its last
byte went out (``after_answer``, or a download's own close), so no client waits for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings
from django.db import models
from django.http import HttpResponseBase
from django.utils import timezone

from collector.audit import audit
from collector.metrics import download_ended, download_started, request_log_write_failed
from collector.prepared import insert

if TYPE_CHECKING:
    from collector.limits import KeyStream

log = logging.getLogger("collector.requestlog")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Query parameters that are credentials, never logged.
SECRET_PARAMS = ("api_key",)
ERROR_MAX = 300
QUERY_MAX = 2000


def after_answer(response: HttpResponseBase, write: Callable[[], None]) -> None:
    """Call ``write`` (a row's ``finish``) once the server has sent ``response``: when it closes it.

    A WSGI server closes a response after its last byte, so the client has its answer before the
    row is written; Django's test client closes it when it hands the response over (streamed:
    once its body was read). Django runs a response's closers the way it closes a streamed body's
    file (``FileResponse``) and swallows what they raise, so a failure is logged here.
    """

    def closed() -> None:
        try:
            write()
        except Exception:
            log.exception("could not write the request log row")

    # Django's own list of what a response's close() calls (it closes a FileResponse's file so);
    # not in the type stubs.
    response._resource_closers.append(closed)  # type: ignore[attr-defined]


class NodeOutcome(TypedDict):
    """How one node answered: its HTTP status (None when it never answered), bytes, and why it failed."""

    node: int
    status: int | None
    bytes: int
    error: str


def query_text(query: Mapping[str, Any] | None) -> str:
    """A request's query as the log keeps it: the key left out, cut at QUERY_MAX characters."""
    shown = {k: v for k, v in (query or {}).items() if k not in SECRET_PARAMS}
    return "&".join(f"{k}={v}" for k, v in shown.items())[:QUERY_MAX]


def as_datetime(ns: int) -> datetime:
    """Epoch nanoseconds as an aware datetime, exact to the microsecond (unlike a float timestamp)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


class RequestLog(models.Model):
    """One /data.pcap or /flows asked: who pulled which packets from which nodes, and how it ended."""

    VIEWS = (("data.pcap", "data.pcap"), ("flows", "flows"), ("export", "export"))

    time = models.DateTimeField(default=timezone.now, db_index=True)
    view = models.CharField(max_length=16, choices=VIEWS, default="data.pcap")
    method = models.CharField(max_length=8, default="GET")
    key_prefix = models.CharField(max_length=16, db_index=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="par_requests",
        help_text="the web page's user, for requests made there",
    )
    node = models.PositiveIntegerField("node id", null=True, blank=True, help_text="when one node was asked")
    nodes = models.CharField("nodes asked", max_length=1000, blank=True, help_text="comma-separated ids")
    outcomes = models.JSONField(default=list, blank=True, help_text="per node: status, bytes, error")
    query = models.TextField(blank=True, help_text="the parameters as asked (credentials left out)")
    src_addr = models.GenericIPAddressField(null=True, blank=True)
    src_port = models.PositiveIntegerField(null=True, blank=True)
    dst_addr = models.GenericIPAddressField(null=True, blank=True)
    dst_port = models.PositiveIntegerField(null=True, blank=True)
    proto = models.PositiveSmallIntegerField(null=True, blank=True, help_text="empty: TCP, UDP or SCTP")
    start = models.DateTimeField("window start", null=True, blank=True)
    end = models.DateTimeField("window end", null=True, blank=True)
    status = models.PositiveSmallIntegerField(help_text="HTTP status sent to the client")
    error = models.CharField(max_length=ERROR_MAX, blank=True, help_text="why it failed, or empty")
    bytes_sent = models.BigIntegerField(
        default=0, help_text="bytes of the body the server wrote to the client's socket"
    )
    duration = models.FloatField("duration (s)", default=0.0)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    # Set by ``begin``, never stored: when the request arrived, on the monotonic clock.
    started: float

    class Meta:
        app_label = "collector"
        ordering = ["-time", "-id"]
        verbose_name = "request log entry"
        verbose_name_plural = "request log"

    def __str__(self) -> str:
        return (
            f"{self.time:%Y-%m-%d %H:%M:%S} {self.key_prefix} nodes {self.nodes or self.node} {self.status}"
        )

    # ------------------------------------------------------------ bookkeeping

    @classmethod
    def begin(
        cls,
        view: str,
        *,
        method: str = "GET",
        client_ip: str | None = None,
        query: dict[str, Any] | None = None,
    ) -> RequestLog:
        """A row for a request just arrived; nothing is written until ``finish``."""
        entry = cls(view=view, method=method, client_ip=client_ip, query=query_text(query))
        entry.started = time.monotonic()
        entry.stream_slot = None
        entry.finished = False
        return entry

    def by(self, key_prefix: str = "", user: Any = None) -> None:
        """Who asked: a key's shown prefix, or a web page user."""
        self.key_prefix = key_prefix
        if user is not None and getattr(user, "pk", None) is not None:
            self.user = user

    def describe(self, flow: Any) -> None:
        """The selectors and window of a validated query (an ``engine.selection.selectors.Selection``): those it has.

        An address is kept when the selector is a single host; a network, a Community ID and the
        rest are in ``query``.
        """
        for field, network in (("src_addr", flow.src), ("dst_addr", flow.dst)):
            if network is not None and network.num_addresses == 1:
                setattr(self, field, str(network.network_address))
        self.src_port, self.dst_port = flow.src_port, flow.dst_port
        self.proto = flow.proto
        self.start, self.end = as_datetime(flow.start_ns), as_datetime(flow.end_ns)

    def asked(self, node_ids: Iterable[int]) -> None:
        """The nodes this request asks, before any is contacted."""
        ids = list(node_ids)
        self.nodes = ",".join(map(str, ids))[:1000]
        self.node = ids[0] if len(ids) == 1 else None
        self.outcomes = [NodeOutcome(node=i, status=None, bytes=0, error="") for i in ids]

    def node_answered(self, node_id: int, status: int | None, nbytes: int = 0, error: str = "") -> None:
        """How node ``node_id`` answered (its status, the bytes it sent, why it failed)."""
        for outcome in self.outcomes:
            if outcome["node"] == node_id:
                break
        else:
            outcome = NodeOutcome(node=node_id, status=None, bytes=0, error="")
            self.outcomes.append(outcome)
        outcome["status"], outcome["bytes"], outcome["error"] = status, nbytes, error[:ERROR_MAX]

    def hold(self, slot: KeyStream | None) -> None:
        """A download slot held until ``finish`` (see collector.limits)."""
        self.stream_slot = slot
        if slot is not None:
            download_started()

    def finish(self, status: int, bytes_sent: int = 0, error: str = "") -> None:
        """Write the row (once; later calls do nothing) and release the download slot."""
        if getattr(self, "finished", False):
            return
        self.finished = True
        self.status, self.bytes_sent, self.error = status, bytes_sent, error[:ERROR_MAX]
        self.duration = round(time.monotonic() - getattr(self, "started", time.monotonic()), 6)
        try:
            try:
                insert(self)  # as save(force_insert=True) would, without building the statement each time
            except Exception:
                request_log_write_failed()
                raise
            audit(self)  # the log line beside the row (collector/audit.py)
        finally:
            self.release_slot()

    def release_slot(self) -> None:
        """Give the download slot back now (``finish`` does, if this did not)."""
        slot, self.stream_slot = getattr(self, "stream_slot", None), None
        if slot is not None:
            download_ended()
            slot.release()

    # ------------------------------------------------------------ display

    @property
    def flow(self) -> str:
        if self.src_addr is None:
            return ""
        return f"{self.src_addr}:{self.src_port} <-> {self.dst_addr}:{self.dst_port}"

    def node_summary(self) -> str:
        """Each node's answer on one line: ``1: 200, 4096 B; 3: 504 timed out``."""
        parts = []
        for outcome in self.outcomes or []:
            text = f"{outcome.get('node')}: {outcome.get('status') or '-'}"
            if outcome.get("bytes"):
                text += f", {outcome['bytes']} B"
            if outcome.get("error"):
                text += f" {outcome['error']}"
            parts.append(text)
        return "; ".join(parts)
