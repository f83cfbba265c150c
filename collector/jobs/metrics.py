"""The exports' figures for /metrics, read from the jobs' rows at scrape time (every collector agrees)."""

from __future__ import annotations

from django.db.models import Count, Min, Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from collector.jobs.model import Export, State


class ExportMetrics:
    """Jobs by state, the bytes of finished files kept, and the age of the oldest queued job."""

    def collect(self):
        states = GaugeMetricFamily("par_export_jobs", "Export jobs by state", labels=["state"])
        counts = dict(Export.objects.values_list("state").annotate(n=Count("id")).order_by())
        for state in State.values:
            states.add_metric([state], counts.get(state, 0))
        yield states
        kept = Export.objects.filter(state=State.DONE).aggregate(total=Sum("bytes"))["total"] or 0
        yield GaugeMetricFamily("par_export_bytes", "Bytes of the finished export files kept", value=kept)
        oldest = Export.objects.filter(state=State.QUEUED).aggregate(first=Min("created"))["first"]
        lag = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "par_export_worker_lag_seconds",
            "Age of the oldest queued export job (0: none waiting)",
            value=lag,
        )
