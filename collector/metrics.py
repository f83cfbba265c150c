"""The collector's GET /metrics: the request metrics (api/metrics.py) and its calls to nodes."""

from __future__ import annotations

from prometheus_client import Counter

from api.metrics import LOCAL, metrics_response

PROXY_ERRORS = Counter(
    "par_node_proxy_errors",
    "Calls to a node that failed, by node id and reason (unreachable, timeout, refused, error, mid-stream)",
    ["node", "reason"],
    registry=LOCAL,
)


def proxy_failed(node_id: int, reason: str) -> None:
    PROXY_ERRORS.labels(str(node_id), reason).inc()


def metrics(request):
    """GET /metrics, for scrapers in PAR_METRICS_ALLOW (no API key)."""
    from collector.jobs.metrics import ExportMetrics  # the models are loaded by now

    return metrics_response(request, ExportMetrics())
