"""Facts about this sensor for GET /status, gathered in Python: no shelling out."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from engine.formats.archived import ArchiveRecord
from engine.formats.source import capture_name, tier_of
from engine.index import INDEX_SUFFIX, capture_span
from node.indexdamage import damaged_index_count
from node.store import capture_dir_files, name_epoch

CAPTURE_TOOLS = ("daemonlogger", "tcpdump", "dumpcap", "netsniff-ng")
# Walking a filer tree is cheap (one stat per entry) but must stay bounded.
MAX_WALK_ENTRIES = 2_000_000


@dataclass
class TierFacts:
    """The captures of one storage tier (raw, compressed, archived): how many, their bytes, their epochs."""

    files: int = 0
    bytes: int = 0  # on disk (raw, compressed), or of the objects in the archive (archived)
    oldest: int | None = None
    newest: int | None = None

    def add(self, epoch: int, size: int) -> None:
        self.files += 1
        self.bytes += size
        self.oldest = epoch if self.oldest is None else min(self.oldest, epoch)
        self.newest = epoch if self.newest is None else max(self.newest, epoch)

    def as_json(self) -> dict:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "oldest": _iso(self.oldest),
            "newest": _iso(self.newest),
        }


TIERS = ("raw", "compressed", "archived")


@dataclass
class TreeFacts:
    """What one walk of a directory tree learns."""

    bytes: int = 0  # disk usage, as du counts it (allocated blocks)
    captures: int = 0  # files named <prefix>.<epoch>
    indexes: int = 0  # files named <prefix>.<epoch>.idx: a capture's index
    index_bytes: int = 0  # their disk usage
    oldest: int | None = None  # epoch seconds in the oldest capture's name
    newest: int | None = None
    newest_path: str | None = None
    complete: bool = True  # False when the walk stopped at MAX_WALK_ENTRIES
    errors: list[str] = field(default_factory=list)
    tiers: dict[str, TierFacts] = field(default_factory=lambda: {tier: TierFacts() for tier in TIERS})


def walk_tree(root: Path, prefix: str, *, limit: int = MAX_WALK_ENTRIES) -> TreeFacts:
    """Disk usage and capture/index counts of ``root``, walked with os.scandir, links not followed."""
    facts = TreeFacts()
    try:
        facts.bytes = os.stat(root).st_blocks * 512  # du counts the directory itself too
    except OSError as exc:
        facts.errors.append(f"{root}: {exc.strerror}")
        return facts
    linked: set[tuple[int, int]] = set()  # hard-linked files count once, as in du
    stack = [str(root)]
    seen = 0
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > limit:
                        facts.complete = False
                        return facts
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # gone while we looked (the filer moves files)
                    if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                        if (st.st_dev, st.st_ino) in linked:
                            continue
                        linked.add((st.st_dev, st.st_ino))
                    facts.bytes += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        _count_file(facts, entry, prefix, st.st_blocks * 512)
        except OSError as exc:
            facts.errors.append(f"{exc.filename}: {exc.strerror}")
    return facts


def _count_file(facts: TreeFacts, entry: os.DirEntry, prefix: str, used: int) -> None:
    # The names the filer and the store take for captures and indexes, no others.
    epoch = name_epoch(capture_name(entry.name), prefix)
    if epoch is not None:
        tier = tier_of(entry.name)
        size = used
        if tier == "archived":
            try:
                size = ArchiveRecord.load(entry.path).size
            except (OSError, ValueError):
                size = 0
        facts.tiers[tier].add(epoch, size)
        facts.captures += 1
        if facts.oldest is None or epoch < facts.oldest:
            facts.oldest = epoch
        if facts.newest is None or epoch > facts.newest:
            facts.newest, facts.newest_path = epoch, entry.path
    elif (
        entry.name.endswith(INDEX_SUFFIX) and name_epoch(entry.name[: -len(INDEX_SUFFIX)], prefix) is not None
    ):
        facts.indexes += 1
        facts.index_bytes += used


def disk_free(path: Path) -> dict:
    """The file system holding ``path``: total, used and free bytes (as df), and its mount point."""
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return {"total": None, "used": None, "free": None, "mount": None, "error": exc.strerror}
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize  # what an unprivileged writer (the capture tool) can still use
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return {"total": total, "used": used, "free": free, "mount": str(mount_point(path))}


def mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def capture_processes(proc: Path = Path("/proc")) -> list[dict] | None:
    """Running capture tools ``[{name, pid}]`` read from /proc/*/comm; None without /proc."""
    if not (proc / "self").exists():
        return None
    found = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            name = Path(entry.path, "comm").read_text().strip()
        except OSError:
            continue  # the process ended
        if name in CAPTURE_TOOLS:
            found.append({"name": name, "pid": int(entry.name)})
    return sorted(found, key=lambda p: p["pid"])


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def live_file(path: Path | None, prefix: str) -> dict | None:
    """The capture file being written (as the filer decides it), its size and last write."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {
        "name": path.name,
        "started": _iso(name_epoch(path.name, prefix)),
        "bytes": st.st_size,
        "modified": _iso(st.st_mtime),
    }


def newest_data(filed: TreeFacts) -> float | None:
    """When the newest filed packet was captured: its index knows; else the newest file's start."""
    if filed.newest_path is None:
        return None
    span = capture_span(Path(filed.newest_path))
    return span[1] / 1e9 if span else filed.newest


def node_status(capture_dir: Path, filer_dir: Path, prefix: str) -> dict:
    """Everything GET /status answers."""
    capture = walk_tree(capture_dir, prefix)
    filed = walk_tree(filer_dir, prefix)
    waiting = capture_dir_files(capture_dir, prefix)
    processes = capture_processes()
    now = datetime.now(UTC)
    return {
        "hostname": socket.gethostname(),
        "capturedir": str(capture_dir),
        "filerdir": str(filer_dir),
        "du": {"capturedir": capture.bytes, "filerdir": filed.bytes},
        "df": {"capturedir": disk_free(capture_dir), "filerdir": disk_free(filer_dir)},
        "capture": {
            "running": None if processes is None else bool(processes),
            "name": processes[0]["name"] if processes else None,
            "pid": processes[0]["pid"] if processes else None,
            "processes": processes or [],
            "live_file": live_file(waiting.live, prefix),
        },
        "files": {
            "count": filed.captures,
            "indexes": filed.indexes,
            "oldest": _iso(filed.oldest),
            "newest": _iso(newest_data(filed)),
            "waiting": len(waiting.pending),
            "future": [path.name for path in waiting.future][:10],
            "complete": filed.complete and capture.complete,
            "errors": (capture.errors + filed.errors)[:10],
            "damaged_indexes": damaged_index_count(),
            "tiers": {
                **{tier: facts.as_json() for tier, facts in filed.tiers.items()},
                "archive": archive_status(),
            },
        },
        "system_date": now.astimezone().isoformat(timespec="seconds"),
        "utc_datetime": now.isoformat(timespec="seconds"),
    }


def archive_status() -> dict:
    """The archive tier's settings and the archiver's counts (node/filerstats.py): no archive request."""
    from django.conf import settings

    from node.filerstats import read_stats

    stats = read_stats(settings.PAR_DATA_DIR)
    return {
        "url": settings.PAR_ARCHIVE_URL or None,
        "after_hours": settings.PAR_ARCHIVE_AFTER,
        "max_age_hours": settings.PAR_ARCHIVE_MAX_AGE or None,
        "archived": stats.archived,
        "archived_bytes": stats.archived_bytes,
        "backlog": stats.archive_backlog,
        "errors": stats.archive_errors,
        "expired": stats.archive_expired,
    }
