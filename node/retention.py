"""Retention of filed captures: delete the oldest hour directories, captures and indexes together.

Two rules, either or both: keep a percentage of the filer's file system free (``--keep-free``),
and keep nothing older than a number of hours (``--max-age``; an hour directory goes once its whole
hour is that old). Local retention deletes local bytes only: an archived capture's record
(``<name>.archived``), its index and the hour's summary stay, so the archive answers for the hour
until its own retention (``PAR_ARCHIVE_MAX_AGE``, node/tiers.py) deletes the object and then them;
an hour directory is removed once nothing is left in it. Symbolic links in the tree are neither
followed nor deleted, as queries ignore them: each pass that meets one warns once. The newest hour
directory is never deleted for free space: a disk filled by something else must not cost the
sensor all its captures. Every deletion is logged.
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

from engine.formats.source import ARCHIVED_SUFFIX
from engine.index import INDEX_SUFFIX
from engine.index.summary import SUMMARY_SUFFIX
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


def archived_kept(directory: Path) -> set[str]:
    """The names in ``directory`` local retention keeps: each archived capture's record and index, and
    the hour's summary when there is any (empty: the whole directory may go)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return set()
    records = [name for name in names if name.endswith(ARCHIVED_SUFFIX) and not name.startswith(".")]
    if not records:
        return set()
    kept = set(records) | {name[: -len(ARCHIVED_SUFFIX)] + INDEX_SUFFIX for name in records}
    kept |= {name for name in names if name.endswith(SUMMARY_SUFFIX) and not name.startswith(".")}
    return kept


def delete_hour_dir(
    hour: HourDir, filer_dir: Path, reason: str, *, simulate: bool, prefix: str | None = None
) -> tuple[int, int] | None:
    """Delete one hour directory's local captures and the directory when nothing is left in it (its
    empty parents too); (files, bytes) deleted. Archived captures' records and indexes stay
    (``archived_kept``), and the hour's summary, brought to what is left. None: the hour holds
    archived captures only, nothing was deleted."""
    kept = archived_kept(hour.path)
    files = size = 0
    with os.scandir(hour.path) as listing:
        doomed = [entry for entry in listing if entry.name not in kept]
    for entry in doomed:
        if entry.is_file(follow_symlinks=False):
            files += 1
            size += entry.stat(follow_symlinks=False).st_size
    if not doomed and kept:
        return None  # archived captures only: the archive's retention deletes them
    verb = "Would delete" if simulate else "Deleting"
    what = f"; the {len(kept)} files of its archived captures stay" if kept else ""
    log.info("%s %s (%d files, %d bytes%s): %s", verb, hour.path, files, size, what, reason)
    if simulate:
        return files, size
    # Captures before their indexes: an index without its capture is never looked at.
    doomed.sort(key=lambda e: e.name.endswith(INDEX_SUFFIX))
    for entry in doomed:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        crash_point("deleting")
    if kept:
        refresh_hour_summary(hour.path, prefix)
        return files, size
    remove_empty_dirs(hour.path, filer_dir)
    return files, size


def refresh_hour_summary(directory: Path, prefix: str | None) -> None:
    """Bring the summary of ``directory`` to the captures left in it (a failure is logged)."""
    from node import store

    if prefix is None:  # the captures' own: <prefix>.<epoch>.archived
        names = [n for n in os.listdir(directory) if n.endswith(ARCHIVED_SUFFIX)]
        if not names:
            return
        prefix = names[0][: -len(ARCHIVED_SUFFIX)].rpartition(".")[0]
    try:
        store.refresh_summary(directory, prefix)
    except OSError as exc:
        log.warning("Cannot write the summary of %s: %s; its files are searched one by one", directory, exc)


def remove_empty_dirs(directory: Path, filer_dir: Path) -> None:
    """Remove ``directory`` and its parents below ``filer_dir`` while they are empty."""
    path = directory
    while path != Path(filer_dir):
        try:
            path.rmdir()
        except OSError:  # not empty (or gone): the parents are not either
            return
        path = path.parent


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
    prefix: str | None = None,
) -> Deleted:
    """Delete hour directories past ``max_age_hours``, then the oldest until ``keep_free`` % is free
    (local captures only: ``delete_hour_dir``)."""
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
            _count(deleted, delete_hour_dir(dirs.pop(0), filer_dir, reason, simulate=simulate, prefix=prefix))
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
            _count(deleted, delete_hour_dir(dirs.pop(0), filer_dir, reason, simulate=simulate, prefix=prefix))
    return deleted


def _count(deleted: Deleted, files_bytes: tuple[int, int] | None) -> None:
    if files_bytes is None:
        return  # an hour of archived captures only: nothing local was left to delete
    deleted.dirs += 1
    deleted.files += files_bytes[0]
    deleted.bytes += files_bytes[1]
