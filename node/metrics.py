"""The node's GET /metrics: the request metrics (api/metrics.py) and the sensor's state, read at scrape.

Disk, capture directory and capture process are read when scraped (cheap: statvfs, one listing,
/proc); the filer tree's sizes come from one walk cached for WALK_EVERY seconds; the filer's
counts from its stats file (node/filerstats.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from django.conf import settings
from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from api.metrics import LOCAL, metrics_response
from node import status
from node.filerstats import FilerStats, read_stats
from node.store import capture_dir_files, name_epoch

ARCHIVE_FETCHED = Counter(
    "par_archive_fetched_bytes", "Bytes fetched from the archive to answer queries", registry=LOCAL
)
ARCHIVE_REQUESTS = Counter(
    "par_archive_requests",
    "Ranged GETs to the archive to answer queries, by outcome",
    ["outcome"],
    registry=LOCAL,
)
WALK_EVERY = 60.0
_walk_lock = threading.Lock()
_walk_cache: dict[tuple, tuple[float, float, status.TreeFacts]] = {}


def filer_tree(filer_dir: Path, prefix: str, last_pass: float) -> status.TreeFacts:
    """The filer tree's walk, at most WALK_EVERY seconds old and never older than the last filer pass."""
    key = (str(filer_dir), prefix)
    with _walk_lock:
        cached = _walk_cache.get(key)
        if cached is not None and cached[1] == last_pass and time.monotonic() - cached[0] < WALK_EVERY:
            return cached[2]
        facts = status.walk_tree(filer_dir, prefix)
        _walk_cache[key] = (time.monotonic(), last_pass, facts)
        return facts


class NodeCollector:
    """The sensor's metrics, computed when Prometheus asks."""

    def __init__(self, capture_dir: Path, filer_dir: Path, data_dir: Path, prefix: str):
        self.capture_dir, self.filer_dir, self.data_dir, self.prefix = (
            capture_dir,
            filer_dir,
            data_dir,
            prefix,
        )

    def collect(self):
        stats = read_stats(self.data_dir)
        yield from self._filer(stats)
        yield from self._waiting()
        yield from self._tree(stats.last_pass)
        yield from self._disks()
        yield from self._capture()

    def _filer(self, stats: FilerStats):
        for name, doc, value in (
            ("par_filer_passes", "Filing passes run", stats.passes),
            ("par_filer_files", "Capture files filed", stats.files),
            ("par_filer_filed_bytes", "Bytes of the capture files filed", stats.bytes),
            ("par_filer_indexed_packets", "Packets indexed by the filer", stats.packets),
            (
                "par_filer_seconds",
                "Seconds spent in filing passes (rate of packets over it: index build rate)",
                stats.seconds,
            ),
            (
                "par_filer_failed_files",
                "Capture files a pass could not file (retried next pass)",
                stats.failed,
            ),
            ("par_filer_deleted_hours", "Hour directories deleted by retention", stats.deleted_dirs),
            ("par_tier_compressed_files", "Filed captures compressed by tier passes", stats.compressed),
            (
                "par_filer_summaries_rewritten",
                "Older hours' summaries the filer brought up to date (after an upgrade, or found stale)",
                stats.summaries_rewritten,
            ),
            (
                "par_archive_uploaded_files",
                "Captures archived (uploaded, verified, removed locally)",
                stats.archived,
            ),
            ("par_archive_uploaded_bytes", "Bytes uploaded to the archive", stats.archived_bytes),
            (
                "par_archive_errors",
                "Captures an archive pass could not archive (retried next pass)",
                stats.archive_errors,
            ),
            (
                "par_archive_expired_files",
                "Archived captures deleted past PAR_ARCHIVE_MAX_AGE",
                stats.archive_expired,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "par_filer_last_pass_timestamp_seconds",
            "When the last filing pass ended (0: never)",
            value=stats.last_pass,
        )
        yield GaugeMetricFamily(
            "par_archive_backlog_files",
            "Captures old enough to archive still local, after the last archive pass",
            value=stats.archive_backlog,
        )
        yield GaugeMetricFamily(
            "par_filer_summaries_catching_up",
            "1 while the filer is still bringing older hours' summaries up to date, a budget a pass",
            value=stats.summaries_catching_up,
        )
        rate = stats.last_pass_packets / stats.last_pass_seconds if stats.last_pass_seconds > 0 else 0.0
        yield GaugeMetricFamily(
            "par_filer_index_rate_packets_per_second",
            "Packets indexed per second in the last pass",
            value=rate,
        )

    def _waiting(self):
        try:
            files = capture_dir_files(self.capture_dir, self.prefix)
        except OSError:
            return
        epochs = [e for e in (name_epoch(p.name, self.prefix) for p in files.pending) if e is not None]
        yield GaugeMetricFamily(
            "par_filer_files_waiting", "Finished capture files not filed yet", value=len(files.pending)
        )
        lag = max(0.0, time.time() - min(epochs)) if epochs else 0.0
        yield GaugeMetricFamily(
            "par_filer_lag_seconds",
            "Age of the oldest finished capture not filed yet, by its name (0: none waiting)",
            value=lag,
        )
        yield GaugeMetricFamily(
            "par_capture_live_file_timestamp_seconds",
            "Epoch in the name of the capture file being written (0: none)",
            value=float(name_epoch(files.live.name, self.prefix) or 0) if files.live else 0.0,
        )

    def _tree(self, last_pass: float):
        facts = filer_tree(self.filer_dir, self.prefix, last_pass)
        yield GaugeMetricFamily(
            "par_filed_bytes",
            "Disk used by the filer tree (captures, indexes, directories), as du",
            value=facts.bytes,
        )
        yield GaugeMetricFamily(
            "par_index_bytes", "Disk used by the indexes in the filer tree", value=facts.index_bytes
        )
        yield GaugeMetricFamily("par_filed_files", "Capture files in the filer tree", value=facts.captures)
        yield GaugeMetricFamily(
            "par_filed_oldest_timestamp_seconds",
            "Epoch of the oldest filed capture (0: none)",
            value=facts.oldest or 0,
        )
        families = [
            GaugeMetricFamily("par_tier_files", "Filed captures by storage tier", labels=["tier"]),
            GaugeMetricFamily(
                "par_tier_bytes",
                "Bytes of the filed captures by tier (archived: the objects')",
                labels=["tier"],
            ),
            GaugeMetricFamily(
                "par_tier_oldest_timestamp_seconds",
                "Epoch of the oldest capture of a tier (0: none)",
                labels=["tier"],
            ),
            GaugeMetricFamily(
                "par_tier_newest_timestamp_seconds",
                "Epoch of the newest capture of a tier (0: none)",
                labels=["tier"],
            ),
        ]
        for tier, tier_facts in facts.tiers.items():
            values = (tier_facts.files, tier_facts.bytes, tier_facts.oldest or 0, tier_facts.newest or 0)
            for family, value in zip(families, values, strict=True):
                family.add_metric([tier], value)
        yield from families

    def _disks(self):
        free = GaugeMetricFamily(
            "par_disk_free_bytes", "Free bytes of the file system, for an unprivileged writer", labels=["dir"]
        )
        size = GaugeMetricFamily("par_disk_size_bytes", "Size of the file system", labels=["dir"])
        for label, path in (("capture", self.capture_dir), ("filer", self.filer_dir)):
            disk = status.disk_free(path)
            if disk["free"] is not None:
                free.add_metric([label], disk["free"])
                size.add_metric([label], disk["total"])
        yield free
        yield size

    def _capture(self):
        processes = status.capture_processes()
        if processes is not None:
            yield GaugeMetricFamily(
                "par_capture_process_seen",
                f"1 when a capture tool ({', '.join(status.CAPTURE_TOOLS)}) runs on this host",
                value=1 if processes else 0,
            )


def node_collector() -> NodeCollector:
    return NodeCollector(
        settings.PAR_CAPTURE_DIR, settings.PAR_FILER_DIR, settings.PAR_DATA_DIR, settings.PAR_FILE_PREFIX
    )


def metrics(request):
    """GET /metrics: for scrapers in PAR_METRICS_ALLOW (not PAR_NODE_ALLOW: a scraper is no collector)."""
    return metrics_response(request, node_collector())
