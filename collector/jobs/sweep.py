"""The export worker's housekeeping, run every few seconds beside the jobs (``runexports``).

- A running job whose worker stopped writing its progress for PAR_EXPORT_LEASE seconds (killed,
  its machine gone) is given another attempt, or failed after PAR_EXPORT_ATTEMPTS.
- A finished file is deleted and its job ``expired`` PAR_EXPORT_TTL hours after it finished, and
  sooner, oldest first, while the export directory's disk has less than PAR_EXPORT_MIN_FREE free.
- Temporary files no running attempt writes any more (a killed worker's) are removed.

Every change is a conditional UPDATE, so several workers (several collectors) may sweep at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from collector.jobs.model import Export, State

log = logging.getLogger("collector.jobs")


@dataclass
class SweepReport:
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def sweep(requeue: Callable[[int], None], free: Callable[[Path], int] = free_bytes) -> SweepReport:
    report = SweepReport()
    reap_dead_attempts(requeue, report)
    expire_old(report)
    directory = Path(settings.PAR_EXPORT_DIR)
    if directory.is_dir():
        make_room(directory, free, report)
        remove_orphans(directory, report)
    return report


def reap_dead_attempts(requeue: Callable[[int], None], report: SweepReport) -> None:
    silent_since = timezone.now() - timedelta(seconds=settings.PAR_EXPORT_LEASE)
    for export in Export.objects.filter(state=State.RUNNING, heartbeat__lt=silent_since):
        reason = f"its worker stopped during attempt {export.attempts}"
        if Export.retry_or_fail(export.pk, export.attempts, reason):
            log.warning("export %s: %s; queued again", export.pk, reason)
            report.retried.append(export.pk)
            requeue(export.pk)
        else:
            log.warning("export %s: %s; failed", export.pk, reason)
            report.failed.append(export.pk)


def expire_old(report: SweepReport) -> None:
    for export in Export.objects.filter(state=State.DONE, expires__lte=timezone.now()):
        if export.expire():
            report.expired.append(export.pk)


def make_room(directory: Path, free: Callable[[Path], int], report: SweepReport) -> None:
    """Delete finished files, oldest first, until the disk has PAR_EXPORT_MIN_FREE free."""
    wanted = settings.PAR_EXPORT_MIN_FREE
    if free(directory) >= wanted:
        return
    for export in Export.objects.filter(state=State.DONE).order_by("finished", "id"):
        if export.expire():
            log.warning("export %s: its file deleted early: the export disk is low", export.pk)
            report.expired.append(export.pk)
        if free(directory) >= wanted:
            return


def remove_orphans(directory: Path, report: SweepReport) -> None:
    """Files of no done job, and temporary files silent for a lease: a dead attempt's leftovers."""
    kept = set(Export.objects.filter(state=State.DONE).values_list("file_name", flat=True))
    quiet = time.time() - settings.PAR_EXPORT_LEASE
    for entry in os.scandir(directory):
        if not entry.is_file() or entry.name in kept:
            continue
        try:
            if entry.stat().st_mtime > quiet:
                continue  # being written (a temporary file), or just renamed and about to be marked done
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        report.removed.append(entry.name)
