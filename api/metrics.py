"""GET /metrics on both roles: Prometheus text, the counts of every gunicorn worker added up.

The request metrics are counted here, by a middleware, for every request either role answers;
each role adds its own (collector/metrics.py, node/metrics.py). Under gunicorn the workers write
their counts to files (``PROMETHEUS_MULTIPROC_DIR``, see parsite/metricsdir.py) that a scrape
reads; elsewhere (tests, runserver) the counts are this process's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.client import caller, in_any, plain_address

# No *_created series: multiprocess mode has none, so a single process shows none either.
disable_created_metrics()
# This process's metrics; a scrape reads them through the workers' files when there are some.
LOCAL = CollectorRegistry()

REQUESTS = Counter(
    "par_http_requests",
    "Requests answered, by view (its route) and HTTP status",
    ["view", "status"],
    registry=LOCAL,
)
STREAMED = Counter(
    "par_streamed_bytes",
    "Bytes of streamed answers (pcaps, flow lists) sent to clients, by view",
    ["view"],
    registry=LOCAL,
)
DURATION = Histogram(
    "par_request_duration_seconds",
    "Time from a request's arrival to the last byte of its answer, by view",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=LOCAL,
)
REFUSALS = Counter(
    "par_refusals",
    "Requests refused (401, 403, 413, 429), by status and reason (the API error's code, e.g. throttled)",
    ["status", "reason"],
    registry=LOCAL,
)
REFUSAL_STATUSES = frozenset({401, 403, 413, 429})
# What a response refused for, set where it is decided (api/errors.py, node/acl.py); "other" else
# (a CSRF failure, a login lockout).
REASON_ATTRIBUTE = "par_refusal"
STATIC_VIEW = "static"
UNMATCHED_VIEW = "unmatched"


def view_label(request: HttpRequest) -> str:
    """The route that answered (``/data.pcap``, ``/nodes/<int:node_id>/<str:command>``): few values."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return "/" + match.route
    if request.path_info.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return STATIC_VIEW
    return UNMATCHED_VIEW


class RequestMetricsMiddleware:
    """Counts every answer by view and status, and times it to its last byte (streams included)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        response = self.get_response(request)
        view = view_label(request)
        REQUESTS.labels(view, str(response.status_code)).inc()
        if response.status_code in REFUSAL_STATUSES:
            REFUSALS.labels(str(response.status_code), getattr(response, REASON_ATTRIBUTE, "other")).inc()
        if isinstance(response, StreamingHttpResponse):
            response.streaming_content = _counted(response.streaming_content, view, started)
        else:
            DURATION.labels(view).observe(time.monotonic() - started)
        return response


def _counted(chunks: Iterable[bytes], view: str, started: float) -> Iterator[bytes]:
    sent = 0
    try:
        for chunk in chunks:
            sent += len(chunk)
            yield chunk
    finally:  # also when the client went away or the stream was cut
        STREAMED.labels(view).inc(sent)
        DURATION.labels(view).observe(time.monotonic() - started)


SCRAPER_REFUSED = "this server does not answer this caller's scrapes (PAR_METRICS_ALLOW)"


def scrape_refused(request: HttpRequest) -> str | None:
    """Why the caller may not scrape, None when it is in PAR_METRICS_ALLOW (behind PAR_TRUSTED_PROXIES,
    whom they forward for): its own address, or that a trusted proxy on this host forwarded for nobody."""
    ip, unknown = caller(request)
    if ip is None:
        return f"{SCRAPER_REFUSED}: caller unknown: {unknown}"
    if not in_any(plain_address(ip), settings.PAR_METRICS_ALLOW):
        return f"{SCRAPER_REFUSED}: address {plain_address(ip)} is not allowed"
    return None


def scraper_allowed(request: HttpRequest) -> bool:
    return scrape_refused(request) is None


class _Local:
    """This process's metrics, for a scrape registry (outside gunicorn)."""

    def collect(self):
        return LOCAL.collect()


def metrics_response(request: HttpRequest, *collectors) -> HttpResponse:
    """The Prometheus text answer: every worker's counts and ``collectors`` read now; 403 for others."""
    said = scrape_refused(request)
    if said is not None:
        # Imported here: the filer counts its work in this module, and must not load DRF to start.
        from api.errors import refusal_response

        return refusal_response(said, 403, "scraper_refused")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Local())
    for collector in collectors:
        registry.register(collector)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
