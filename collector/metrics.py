"""The collector's GET /metrics: the request metrics (api/metrics.py), its calls to nodes, whether
each node answers now, downloads in flight and request-log rows it could not write."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

from api.metrics import LOCAL, metrics_response

PROXY_ERRORS = Counter(
    "par_node_proxy_errors",
    "Calls to a node that failed, by node id and reason (unreachable, timeout, refused, error, mid-stream)",
    ["node", "reason"],
    registry=LOCAL,
)
# The latest over every worker, dead ones too: a timestamp only moves forward.
LAST_ANSWER = Gauge(
    "par_node_last_success_timestamp_seconds",
    "When the node last answered the collector (a query, or the reachability probe of a scrape)",
    ["node"],
    registry=LOCAL,
    multiprocess_mode="max",
)
DOWNLOADS = Gauge(
    "par_downloads_in_flight",
    "Downloads (/data.pcap) being sent now, every worker's added up",
    registry=LOCAL,
    multiprocess_mode="livesum",
)
REQUEST_LOG_FAILURES = Counter(
    "par_request_log_write_failures",
    "Request log rows that could not be written (the answer was sent; the row is lost)",
    registry=LOCAL,
)
# A scrape asks every active node's /ping at once, each for at most this long.
PROBE_TIMEOUT = 3.0


def proxy_failed(node_id: int, reason: str) -> None:
    PROXY_ERRORS.labels(str(node_id), reason).inc()


def node_answered(node_id: int) -> None:
    LAST_ANSWER.labels(str(node_id)).set(time.time())


def download_started() -> None:
    DOWNLOADS.inc()


def download_ended() -> None:
    DOWNLOADS.dec()


def request_log_write_failed() -> None:
    REQUEST_LOG_FAILURES.inc()


def probe(node) -> bool:
    """Whether ``node`` answers /ping now, to this collector (its address and secret): 200 in time."""
    from collector import nodeclient
    from collector.proxy import node_headers

    try:
        answer = nodeclient.request(
            "GET", node.url("ping"), None, node_headers(), PROBE_TIMEOUT, PROBE_TIMEOUT
        )
    except Exception:  # unreachable, refused, timed out: all "down" here
        return False
    try:
        up = answer.status_code == 200
    finally:
        answer.close()
    if up:
        node_answered(node.id)
    return up


class NodeReachability:
    """``par_node_up{node}``: 1 when the node answered this scrape's /ping, else 0 (active nodes only)."""

    def collect(self):
        from collector.models import Node

        nodes = list(Node.objects.filter(active=True).order_by("id"))
        family = GaugeMetricFamily(
            "par_node_up",
            "Whether the node answered the collector's /ping at this scrape (1) or not (0)",
            labels=["node"],
        )
        if nodes:
            with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
                for node, up in zip(nodes, pool.map(probe, nodes), strict=True):
                    family.add_metric([str(node.id)], 1.0 if up else 0.0)
        yield family


def metrics(request):
    """GET /metrics, for scrapers in PAR_METRICS_ALLOW (no API key)."""
    from collector.jobs.metrics import ExportMetrics  # the models are loaded by now

    return metrics_response(request, ExportMetrics(), NodeReachability())
