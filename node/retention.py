"""Retention of filed captures: delete the oldest hour directories, captures and indexes together.

Two rules, either or both: keep a percentage of the filer's file system free (``--keep-free``),
and keep nothing older than a number of hours (``--max-age``; an hour directory goes once its whole
hour is that old). Symbolic links in the tree are neither followed nor deleted, as queries ignore
them: each pass that meets one warns once. The newest hour directory is never deleted for free space: a disk filled by
something else must not cost the sensor all its captures. Every deletion is logged.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from node.faults import crash_point

log = logging.getLogger("node.filer")

_PARTS = (re.compile(r"[0-9]{4}"), re.compile(r"[0-9]{2}"), re.compile(r"[0-9]{2}"), re.compile(r"[0-9]{2}"))


@dataclass(frozen=True)
class HourDir:
    path: Path
    hour: tuple[int, int, int, int]  # year, month, day, hour

    def start_epoch(self, utc: bool) -> float:
        """When this hour starts, in seconds since the epoch."""
        try:
            moment = datetime(*self.hour, tzinfo=UTC if utc else None)
        except ValueError:
            return 0.0  # not a real date (e.g. 2015/02/30): treat as the oldest
        return moment.timestamp()


@dataclass
class Deleted:
    dirs: int = 0
    files: int = 0
    bytes: int = 0


def hour_dirs(filer_dir: Path, links: list[Path] | None = None) -> list[HourDir]:
    """Every ``YYYY/MM/DD/HH`` directory under ``filer_dir``, oldest first.

    Symbolic links named as parts of the tree are not followed (queries ignore them too, see
    ``store.linked_in_tree``): they are added to ``links`` when given.
    """
    found: list[HourDir] = []

    def walk(directory: Path, depth: int, hour: tuple[int, ...]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if not _PARTS[depth].fullmatch(entry.name):
                continue
            if entry.is_symlink():
                if links is not None:
                    links.append(Path(entry.path))
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            here = (*hour, int(entry.name))
            if depth == 3:
                year, month, day, hour_of_day = here
                found.append(HourDir(Path(entry.path), (year, month, day, hour_of_day)))
            else:
                walk(Path(entry.path), depth + 1, here)

    walk(Path(filer_dir), 0, ())
    found.sort(key=lambda d: d.hour)
    return found


def warn_links(links: list[Path], shown: int = 5) -> None:
    """One warning for the symbolic links met in the filer tree during a pass."""
    if not links:
        return
    names = ", ".join(str(path) for path in links[:shown])
    more = f" and {len(links) - shown} more" if len(links) > shown else ""
    log.warning(
        "Ignoring %d symbolic links in the filer tree (what they lead to is neither served by queries "
        "nor deleted by retention; move the data into the tree instead): %s%s",
        len(links),
        names,
        more,
    )


def dir_size(path: Path) -> tuple[int, int]:
    """(files, bytes) directly in ``path``."""
    files = size = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                files += 1
                size += entry.stat(follow_symlinks=False).st_size
    return files, size


def delete_hour_dir(hour: HourDir, filer_dir: Path, reason: str, *, simulate: bool) -> tuple[int, int]:
    """Delete one hour directory and its empty parents; (files, bytes) it held."""
    files, size = dir_size(hour.path)
    verb = "Would delete" if simulate else "Deleting"
    log.info("%s %s (%d files, %d bytes): %s", verb, hour.path, files, size, reason)
    if simulate:
        return files, size
    # Captures before their indexes: an index without its capture is never looked at.
    entries = sorted(os.scandir(hour.path), key=lambda e: e.name.endswith(".idx"))
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        crash_point("deleting")
    hour.path.rmdir()
    parent = hour.path.parent
    while parent != Path(filer_dir) and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return files, size


def free_percent(path: Path, freed: int = 0) -> float:
    usage = shutil.disk_usage(path)
    return 100.0 * min(usage.free + freed, usage.total) / usage.total


def enforce_retention(
    filer_dir: Path,
    *,
    utc: bool,
    keep_free: float | None = None,
    max_age_hours: float | None = None,
    simulate: bool = False,
    now: float | None = None,
) -> Deleted:
    """Delete hour directories past ``max_age_hours``, then the oldest until ``keep_free`` % is free."""
    deleted = Deleted()
    if keep_free is None and max_age_hours is None:
        return deleted
    links: list[Path] = []
    dirs = hour_dirs(filer_dir, links)
    warn_links(links)
    if max_age_hours is not None:
        cutoff = (time.time() if now is None else now) - max_age_hours * 3600
        while dirs and dirs[0].start_epoch(utc) + 3600 <= cutoff:
            reason = f"older than {max_age_hours:g} hours"
            _count(deleted, delete_hour_dir(dirs.pop(0), filer_dir, reason, simulate=simulate))
    if keep_free is not None:
        while True:
            # Simulating, nothing is freed: count what would be.
            free = free_percent(filer_dir, deleted.bytes if simulate else 0)
            if free >= keep_free:
                break
            if len(dirs) <= 1:
                log.warning(
                    "Only %.1f%% of %s is free (want %g%%) and no older captures are left to delete",
                    free,
                    filer_dir,
                    keep_free,
                )
                break
            reason = f"{free:.1f}% free, keeping {keep_free:g}%"
            _count(deleted, delete_hour_dir(dirs.pop(0), filer_dir, reason, simulate=simulate))
    return deleted


def _count(deleted: Deleted, files_bytes: tuple[int, int]) -> None:
    deleted.dirs += 1
    deleted.files += files_bytes[0]
    deleted.bytes += files_bytes[1]
