"""What the filer has done, kept across its runs for GET /metrics: ``PAR_DATA_DIR/filer-stats.json``.

The filer runs from cron (a process a minute) or as a loop, apart from the node's server, so its
counts live in a small file, not in the server's memory. Each pass adds to them under the tree
lock (passes never run at once), and the file is replaced atomically: a reader sees the old counts
or the new ones. A missing or damaged file counts from zero again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.durable import atomic_write

STATS_FILE = "filer-stats.json"

log = logging.getLogger("node.filer")


@dataclass
class FilerStats:
    passes: int = 0
    files: int = 0  # filed
    bytes: int = 0  # of the files filed
    packets: int = 0  # indexed
    seconds: float = 0.0  # spent in filing passes
    failed: int = 0  # files that could not be filed (retried by the next pass)
    deleted_dirs: int = 0  # hour directories deleted by retention
    last_pass: float = 0.0  # when the last pass ended, epoch seconds
    last_pass_seconds: float = 0.0
    last_pass_packets: int = 0
    compressed: int = 0  # captures compressed by tier passes
    archived: int = 0  # captures archived
    archived_bytes: int = 0  # bytes uploaded to the archive
    archive_expired: int = 0  # archived captures deleted past PAR_ARCHIVE_MAX_AGE
    archive_errors: int = 0  # captures that could not be archived (retried by the next pass)
    archive_backlog: int = 0  # captures old enough to archive still local, after the last tier pass
    summaries_rewritten: int = 0  # older hours' summaries brought up to date (node/catchup.py)
    summaries_catching_up: int = 0  # 1 while older hours' summaries are still being looked at


def read_stats(data_dir: Path) -> FilerStats:
    try:
        values = json.loads((Path(data_dir) / STATS_FILE).read_text())
        return FilerStats(**{k: v for k, v in values.items() if k in FilerStats.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return FilerStats()


def record_pass(data_dir: Path, summary) -> FilerStats:
    """Add one pass (a node.filer.PassSummary) to the counts; the caller holds the tree lock.

    Counting never stops filing: a file that cannot be written is logged and the pass goes on.
    """
    stats = read_stats(data_dir)
    stats.passes += 1
    stats.files += summary.files
    stats.bytes += summary.bytes
    stats.packets += summary.packets
    stats.seconds += summary.seconds
    stats.failed += len(summary.failed)
    stats.deleted_dirs += summary.deleted.dirs
    stats.last_pass = time.time()
    stats.last_pass_seconds = summary.seconds
    stats.last_pass_packets = summary.packets
    caught = getattr(summary, "summaries", None)
    if caught is not None:
        stats.summaries_rewritten += caught.rewritten
        stats.summaries_catching_up = int(not caught.done)
    _write(data_dir, stats)
    return stats


def record_tiers(data_dir: Path, summary) -> FilerStats:
    """Add one tier pass (a node.tiers.TierSummary) to the counts; the caller holds the tree lock."""
    stats = read_stats(data_dir)
    stats.compressed += summary.compressed
    stats.archived += summary.archived
    stats.archived_bytes += summary.archived_bytes
    stats.archive_expired += summary.expired
    stats.archive_errors += len(summary.errors)
    if summary.archive_pass:
        stats.archive_backlog = summary.backlog
    _write(data_dir, stats)
    return stats


def _write(data_dir: Path, stats: FilerStats) -> None:
    path = Path(data_dir) / STATS_FILE
    try:
        with atomic_write(path, mode=0o600) as out:  # 0600 whatever the umask, as every data file
            out.write(json.dumps(asdict(stats)).encode())
    except OSError as exc:
        log.warning("cannot keep the filer's counts in %s: %s", path, exc.strerror)
