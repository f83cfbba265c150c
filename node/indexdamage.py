"""Damaged indexes found while serving: logged, counted in /metrics (``par_index_damaged_total``) and /status.

The engine checks an index's checksums as it reads it (``engine.index.format``) and calls
``index_damaged`` once per damaged file and process (``engine.index.on_damaged_index``, hooked up in
``node.apps``); the query scans the capture instead, and ``manage.py reindex`` rebuilds the index.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, Counter, multiprocess

from api.metrics import LOCAL

log = logging.getLogger("node.index")

DAMAGED_INDEXES = Counter(
    "par_index_damaged",
    "Index files found damaged (a checksum fails): scanned around, rebuilt by reindex; "
    "each serving process counts a file once until it changes",
    registry=LOCAL,
)


def index_damaged(path: str, problem: str) -> None:
    """The engine found the index at ``path`` damaged: logged and counted."""
    log.warning(
        "damaged index %s: %s; its capture is scanned instead until reindex rebuilds it", path, problem
    )
    DAMAGED_INDEXES.inc()


def damaged_index_count() -> int:
    """``par_index_damaged_total`` over every worker of this node (this process's outside gunicorn)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return int(registry.get_sample_value("par_index_damaged_total") or 0)
    return int(LOCAL.get_sample_value("par_index_damaged_total") or 0)
