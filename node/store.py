"""The capture tree: which capture files exist, where a file is filed, which files hold a time window.

The capture tool writes ``CAPTURE_DIR/<prefix>.<epoch>`` and starts a new file now and then; the
filer moves every finished file to ``FILER_DIR/YYYY/MM/DD/HH/<prefix>.<epoch>``, the hour of the
epoch in its name (UTC or local time), with its index ``<prefix>.<epoch>.idx`` beside it. A filed
capture may be compressed there (``<prefix>.<epoch>.zst``) or archived (``<prefix>.<epoch>.archived``,
a record of its object), its index unchanged (docs/storage.md).

Rotation assumption: a capture file holds at most ``MAX_ROTATION_S`` (one hour) of packets after
the epoch in its name; daemonlogger ``-t`` and tcpdump ``-G`` are normally set to minutes. To find
the files that can overlap a window, ``captures_for_window()`` looks into the hour directories from one
rotation before the window's start to its end. A filed file that ran longer than that is still found
by every window that starts within an hour of its epoch, but not by a window that starts later and
only touches its tail: rotate at least hourly. The live file in the capture directory is always
considered, however long it runs. A file is named when it is opened, but packets captured shortly
before that (libpcap's last batch before a rotation) land in it: files named up to ``NAME_LAG_S``
after a window's end are looked at too, and what they hold decides (their index's span, else their
first record's time).

The store is the one owner of "which files answer a window": ``captures_for_window()`` hands the
engine ``CaptureFile(path, epoch, span, index)`` records, and ``start_answer()`` starts an answer
over them, listing again when the filer moved a file between the listing and its opening.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from engine.durable import atomic_write
from engine.flow import LATEST_EPOCH, Selection
from engine.formats import PCAP_HEADER_SIZE, CaptureError, PcapCapture, open_capture
from engine.formats.source import TIER_SUFFIXES, capture_name, tier_of
from engine.index import IndexUnusable, open_index
from engine.index.summary import (
    HourSummary,
    index_keys,
    merged,
    probe_of,
    read_summary,
    summary_path,
    write_summary,
)
from engine.query import CaptureFile

MAX_ROTATION_S = 3600
# A capture tool names a file by the wall clock when it opens it, but libpcap hands packets over in
# batches: packets captured up to about a second before a file's name land in it. Files named up to
# this long after a window's end are looked at, and kept only when what they hold starts in time.
NAME_LAG_S = 60
# A capture file named later than this after now is not the live one (clocks differ a little).
FUTURE_TOLERANCE_S = 3600
_EPOCH = re.compile(r"[0-9]{1,12}")
# Hour directories are listed every 15 minutes of the range: a local hour may start at :15, :30
# or :45 UTC, and a DST change may make it half an hour long, so no directory is skipped.
_HOUR_PROBE_S = 900


def name_epoch(name: str, prefix: str) -> int | None:
    """The epoch of a ``<prefix>.<epoch>`` name, else None: the one parser of capture file names."""
    head, dot, tail = name.rpartition(".")
    if not dot or head != prefix or not _EPOCH.fullmatch(tail):
        return None
    epoch = int(tail)
    # A later name is not a capture's: its hour (in local time east of UTC) would be past the
    # year 9999, which datetime cannot hold. Queries stop at the same bound.
    return epoch if epoch <= LATEST_EPOCH else None


def capture_epoch(path: str | os.PathLike, prefix: str) -> int | None:
    """The epoch in a capture file's name; None for other names, hidden files, directories, links."""
    path = Path(path)
    epoch = name_epoch(path.name, prefix)
    if epoch is None:
        return None
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return epoch if stat.S_ISREG(mode) else None


def _captures_in(directory: Path, prefix: str) -> list[tuple[int, Path]]:
    """(epoch, path) of the capture files directly in ``directory``, sorted; [] if it is missing.

    Compressed (``<name>.zst``) and archived (``<name>.archived``) captures count too, each capture
    once (``_one_per_capture``); the filer files raw captures only (``capture_dir_files``).
    """
    found = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                epoch = name_epoch(capture_name(entry.name), prefix)
                if epoch is not None and entry.is_file(follow_symlinks=False):
                    found.append((epoch, Path(entry.path)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = _one_per_capture(found)
    found.sort(key=lambda item: (item[0], item[1].name))
    return found


def captures_in(directory: Path, prefix: str) -> list[Path]:
    """The capture files directly in the hour directory ``directory`` (each capture once, in any tier), sorted."""
    return [path for _, path in _captures_in(directory, prefix)]


class Hour(NamedTuple):
    """A filed hour directory as a window's listing sees it."""

    files: list[tuple[int, Path]]  # (epoch, path) of its captures, sorted
    summary: HourSummary | None  # its current summary, if any
    whole: bool  # the summary names every one of its files
    by_name: dict[str, tuple[int, Path]]  # its files by capture name (``capture_name``)


NO_HOUR = Hour([], None, False, {})


def _one_per_capture(found: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
    """One place per capture: a capture met in two tiers (a move between them was cut short) is read
    from the nearer one, the raw file, else the compressed one; both hold the same bytes."""
    rank = {"raw": 0, "compressed": 1, "archived": 2}
    best: dict[str, tuple[int, Path]] = {}
    for epoch, path in found:
        name = capture_name(path.name)
        kept = best.get(name)
        if kept is None or rank[tier_of(path)] < rank[tier_of(kept[1])]:
            best[name] = (epoch, path)
    return list(best.values())


def stored_capture(directory: Path, name: str) -> Path | None:
    """The capture ``name`` in ``directory`` in whichever tier it is (raw, compressed, archived); None if in none."""
    for path in (directory / name, *(directory / (name + suffix) for suffix in TIER_SUFFIXES)):
        if path.is_file():
            return path
    return None


# Hour directories' listings, kept while the directory's mtime stays (a file filed into it, or
# removed by retention, changes it). A listing taken less than RACY_NS after the directory last
# changed is not kept: a change in the same clock tick could leave the mtime as it was.
_LISTINGS: dict[tuple[str, str], tuple[int, Hour]] = {}
_LISTINGS_LOCK = threading.Lock()
LISTINGS_KEPT = 20_000
RACY_NS = 2_000_000_000


def _hour_captures(directory: Path, prefix: str, mtime_ns: int | None = None) -> Hour:
    """``_captures_in`` for a filed hour directory and its summary, kept while the directory is unchanged.

    ``mtime_ns`` is the directory's, when the caller has just looked (``_filed_hour``). Writing a
    summary renames it into the directory, which changes its mtime: a kept summary is current.
    """
    key = (os.fspath(directory), prefix)
    if mtime_ns is None:
        try:
            mtime_ns = os.stat(directory).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return NO_HOUR
    with _LISTINGS_LOCK:
        kept = _LISTINGS.get(key)
    if kept is not None and kept[0] == mtime_ns:
        return kept[1]
    found = _captures_in(directory, prefix)
    summary = read_summary(summary_path(directory, prefix)) if found else None
    by_name = {capture_name(path.name): (epoch, path) for epoch, path in found}
    whole = summary is not None and by_name.keys() <= set(summary.names)
    hour = Hour(found, summary, whole, by_name)
    if time.time_ns() - mtime_ns >= RACY_NS:
        with _LISTINGS_LOCK:
            if len(_LISTINGS) >= LISTINGS_KEPT:
                _LISTINGS.clear()
            _LISTINGS[key] = (mtime_ns, hour)
    return hour


# The tree's stamp: FILER_DIR/TREE_STAMP, rewritten by the filer after a pass that changed the tree
# and by reindex (``bump_tree_stamp``). While it stays, a window's hour listings (and summaries)
# are taken from memory without looking at their directories, for at most TREE_KEPT_S: a week's
# query looks at one file, not 168 hour directories. A change made by hand is seen within
# TREE_KEPT_S; without a stamp (a tree no filer of this version wrote), every hour is looked at.
TREE_STAMP = "par-tree.stamp"
TREE_KEPT_S = 60.0
_TREE: dict[tuple[str, str, tuple[str, ...]], tuple[tuple, float, Hour]] = {}


def bump_tree_stamp(filer_dir: str | os.PathLike) -> None:
    """Say the filer tree changed (hold the tree lock): listings kept by ``captures_for_window`` end."""
    with atomic_write(Path(filer_dir, TREE_STAMP)) as f:
        f.write(str(time.time_ns()).encode())


def _tree_stamp(filer_dir: str) -> tuple | None:
    try:
        found = os.stat(f"{filer_dir}/{TREE_STAMP}")
    except OSError:
        return None
    return (found.st_ino, found.st_mtime_ns, found.st_size)


def _kept_hour(
    filer_dir: str, parts: tuple[str, ...], links: dict[str, bool], prefix: str, stamp: tuple | None
) -> Hour:
    """``_filed_hour``, from memory while the tree's stamp stays and for at most TREE_KEPT_S."""
    if stamp is None:
        return _filed_hour(filer_dir, parts, links, prefix)
    key, now = (filer_dir, prefix, parts), time.monotonic()
    kept = _TREE.get(key)
    if kept is not None and kept[0] == stamp and now - kept[1] < TREE_KEPT_S:
        return kept[2]
    hour = _filed_hour(filer_dir, parts, links, prefix)
    with _LISTINGS_LOCK:
        if len(_TREE) >= LISTINGS_KEPT:
            _TREE.clear()
        _TREE[key] = (stamp, now, hour)
    return hour


def _filed_hour(filer_dir: str, parts: tuple[str, ...], links: dict[str, bool], prefix: str) -> Hour:
    """The capture files of the hour directory ``filer_dir/<parts>`` and its summary; [] when missing or linked.

    The rule of ``linked_in_tree``, with what one window's listing shares looked at once:
    ``links`` keeps, for this listing, whether each directory on the way is missing or a link.
    The hour directory's own lstat gives the mtime its kept listing is checked against.
    """
    path = filer_dir
    for part in parts[:-1]:
        path = f"{path}/{part}"
        blocked = links.get(path)
        if blocked is None:
            try:
                blocked = links[path] = stat.S_ISLNK(os.lstat(path).st_mode)
            except (FileNotFoundError, NotADirectoryError):
                blocked = links[path] = True  # missing: nothing below it
        if blocked:
            return NO_HOUR
    directory = f"{path}/{parts[-1]}"
    try:
        found = os.lstat(directory)
    except (FileNotFoundError, NotADirectoryError):
        return NO_HOUR
    if not stat.S_ISDIR(found.st_mode):  # a link, or not a directory
        return NO_HOUR
    return _hour_captures(_hour_path(filer_dir, parts), prefix, found.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _hour_path(filer_dir: str, parts: tuple[str, ...]) -> Path:
    """``Path(filer_dir, *parts)``, built once: a window's listing asks for the same few often."""
    return Path(filer_dir, *parts)


def capture_files(capture_dir: str | os.PathLike, prefix: str) -> list[Path]:
    """The capture files in ``capture_dir``, oldest epoch first."""
    return [path for _, path in _captures_in(Path(capture_dir), prefix)]


@dataclass(frozen=True)
class CaptureDirFiles:
    """The capture directory's files by what the filer does with them."""

    pending: list[Path]  # finished: to be filed, oldest first
    live: Path | None  # the newest, still being written
    future: list[Path]  # named more than FUTURE_TOLERANCE_S ahead of now: left alone


def capture_dir_files(
    capture_dir: str | os.PathLike, prefix: str, now: float | None = None
) -> CaptureDirFiles:
    """Which capture files are finished, which one is live, and which are named in the future.

    A stray file named later than the live one (a wrong clock, a copy from elsewhere) must not
    make the live file look finished and get it filed while it is written: files named more than
    FUTURE_TOLERANCE_S after ``now`` do not count as the newest, and are not filed either.
    """
    latest = (time.time() if now is None else now) + FUTURE_TOLERANCE_S
    files = [
        (epoch, path) for epoch, path in _captures_in(Path(capture_dir), prefix) if tier_of(path) == "raw"
    ]
    current = [path for epoch, path in files if epoch <= latest]
    future = [path for epoch, path in files if epoch > latest]
    return CaptureDirFiles(pending=current[:-1], live=current[-1] if current else None, future=future)


def _moment(epoch: int | float, utc: bool) -> datetime:
    # Local time is the process's zone (TZ), which settings keep as the host's zone.
    return datetime.fromtimestamp(epoch, tz=UTC) if utc else datetime.fromtimestamp(epoch)


def hour_parts(epoch: int, utc: bool) -> tuple[str, str, str, str]:
    """``(YYYY, MM, DD, HH)`` of the hour holding ``epoch``, in UTC or local time."""
    moment = _moment(epoch, utc)
    return f"{moment.year:04d}", f"{moment.month:02d}", f"{moment.day:02d}", f"{moment.hour:02d}"


def hour_dir(filer_dir: str | os.PathLike, epoch: int, utc: bool) -> Path:
    """``FILER_DIR/YYYY/MM/DD/HH`` of the hour holding ``epoch``, in UTC or local time."""
    return _hour_path(os.fspath(filer_dir), hour_parts(epoch, utc))


def linked_in_tree(filer_dir: str | os.PathLike, directory: Path) -> Path | None:
    """The first symbolic link on the way from ``filer_dir`` down to ``directory``, else None.

    The tree holds no links: what a link leads to is neither served nor deleted by retention, nor
    filed into (docs/operator.md "Filing captures"). ``filer_dir`` itself may be one.
    """
    path = Path(filer_dir)
    for part in directory.relative_to(filer_dir).parts:
        path = path / part
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return path
        except FileNotFoundError:
            return None
    return None


def hours_between(first_s: int, last_s: int, utc: bool) -> list[tuple[str, str, str, str]]:
    """``hour_parts`` of every second in ``[first_s, last_s]``, in time order, no duplicates.

    Every zone's hours start on a quarter hour, so each _HOUR_PROBE_S block of the epoch lies in
    one hour: the block starts are probed, and their hours kept (a week's window asks the same).
    """
    hours: dict[tuple[str, str, str, str], None] = {}
    zone = None if utc else (os.environ.get("TZ"), time.tzname, time.timezone)  # the process's zone now
    probe = first_s - first_s % _HOUR_PROBE_S
    while probe <= last_s:
        if probe % _DAY_S == 0 and probe + _DAY_S - 1 <= last_s:  # a whole day's blocks at once
            hours.update(_day_hours(probe, utc, zone))
            probe += _DAY_S
            continue
        hours[_block_hour(probe, utc, zone)] = None
        probe += _HOUR_PROBE_S
    return list(hours)


_DAY_S = 86400


@functools.lru_cache(maxsize=1024)
def _day_hours(day: int, utc: bool, zone: tuple | None) -> dict[tuple[str, str, str, str], None]:
    """``hours_between`` of the UTC day starting at ``day`` (its blocks' hours, in order)."""
    return {_block_hour(probe, utc, zone): None for probe in range(day, day + _DAY_S, _HOUR_PROBE_S)}


@functools.lru_cache(maxsize=1 << 16)
def _block_hour(probe: int, utc: bool, zone: tuple | None) -> tuple[str, str, str, str]:
    return hour_parts(probe, utc)


def capture_file(path: Path, epoch: int) -> CaptureFile | None:
    """``path`` with its span and current index; None if gone.

    The span is the index's; a file without one spans from its first record (or the epoch in its
    name, whichever is earlier) to its mtime: a name alone says when the file was opened, not when
    its first packets were captured.
    """
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    index = open_index(path, capture_stat=found)
    if index is not None and index.span is not None:
        return CaptureFile(path, epoch, index.span, index)
    first = epoch * 1_000_000_000
    held = first_record_ns(path)
    if held is not None:
        first = min(first, held)
    span = (first, max(found.st_mtime_ns, epoch * 1_000_000_000))
    return CaptureFile(path, epoch, span, index)


def first_record_ns(path: Path) -> int | None:
    """The time of the first record of the capture at ``path``; None without one or when unreadable."""
    try:
        with open_capture(path) as capture:
            if isinstance(capture, PcapCapture):  # one record read, not a chunk of the file
                record = capture.record_at(PCAP_HEADER_SIZE)
                return record.ts_ns if record is not None else None
            for record in capture:
                return record.ts_ns
    except (OSError, CaptureError):
        return None
    return None


def captures_for_window(
    start_ns: int,
    end_ns: int,
    *,
    filer_dir: str | os.PathLike,
    capture_dir: str | os.PathLike,
    prefix: str,
    utc: bool,
    rotation_s: int = MAX_ROTATION_S,
    selection: Selection | None = None,
) -> list[CaptureFile]:
    """The capture files, filed or not, whose span overlaps ``[start_ns, end_ns]``, by epoch.

    A span comes from the index header, else from the file's first record and its mtime: files
    named up to NAME_LAG_S after the window's end are kept when they hold packets from before it. Hour
    directories are listed once per change of their mtime (``_hour_captures``); the capture
    directory, where the live file is, every time. With a ``selection``, a filed file its hour's
    summary names is passed over without opening its index when its span (kept in the summary)
    misses the window or when the summary says it holds no key the selection needs (an hour none
    of whose files can match is passed over at once); if that leaves no file, one
    such file is returned marked ``excluded`` (the window holds data, none of it selected). The hour
    directories of both clocks are looked at (``utc`` first), so files filed before PAR_UTC changed,
    or by a filer run with the other of --utc/--localtime, are found too.
    """
    # The capture directory is listed first: a file the filer moves in between is then seen in
    # its hour directory (listed after), never missed by both listings.
    live = _captures_in(Path(capture_dir), prefix)
    start_s, end_s = start_ns // 1_000_000_000, end_ns // 1_000_000_000
    candidates: dict[str, tuple[int, Path]] = {capture_name(path.name): (epoch, path) for epoch, path in live}
    # A file named shortly after the window's end may hold its last packets: its span decides.
    last_s = min(end_s + NAME_LAG_S, LATEST_EPOCH)
    hours = hours_between(start_s - rotation_s, last_s, utc)
    hours += hours_between(start_s - rotation_s, last_s, not utc)
    root, links = os.fspath(filer_dir), dict[str, bool]()
    stamp = _tree_stamp(root)
    narrow = selection is not None and not selection.any_flow
    probe = probe_of(selection) if selection is not None and narrow else None
    excluded: list[CaptureFile] = []
    live_names = list(candidates)
    for parts in dict.fromkeys(hours):
        listed, summary, whole, by_name = _kept_hour(root, parts, links, prefix, stamp)
        # The files of the hour its summary says may hold a selected flow (the rest are passed over).
        matching = summary.matching_names(probe) if probe is not None and summary is not None else None
        if matching is not None and whole:
            # Every file of the hour is named: only the matching ones are looked at. A live file
            # the summary names was filed since it was listed: its filed place decides.
            for name in [name for name in live_names if name in candidates and name in by_name]:
                del candidates[name]
            added = False
            for name in matching:
                epoch, path = by_name.get(name, (last_s + 1, Path()))
                span = summary.span_of(name)  # type: ignore[union-attr]
                if epoch <= last_s and span is not None and span[1] >= start_ns and span[0] <= end_ns:
                    candidates[name] = (epoch, path)
                    added = True
            if not added and not excluded:  # one of its files stands for it if none is found
                excluded += _standing_in(listed, summary, start_ns, end_ns, last_s)  # type: ignore[arg-type]
            continue
        for epoch, path in listed:
            name = capture_name(path.name)
            if epoch > last_s:
                continue
            span = summary.span_of(name) if summary is not None else None
            if span is not None:
                if span[1] < start_ns or span[0] > end_ns:
                    candidates.pop(name, None)
                    continue
                if matching is not None and name not in matching:
                    candidates.pop(name, None)
                    if not excluded:
                        excluded.append(CaptureFile(path, epoch, span, None, excluded=True))
                    continue
            candidates[name] = (epoch, path)
    found = []
    for epoch, path in candidates.values():
        file = capture_file(path, epoch)
        if file is None and path.parent == Path(capture_dir):  # filed since it was listed
            for clock in (utc, not utc):
                filed = hour_dir(filer_dir, epoch, clock)
                if linked_in_tree(filer_dir, filed) is not None:
                    continue
                stored = stored_capture(filed, path.name)
                if stored is not None and (file := capture_file(stored, epoch)) is not None:
                    break
        if file is not None and file.span is not None and file.span[0] <= end_ns and file.span[1] >= start_ns:
            found.append(file)
    found.sort(key=lambda file: (file.epoch, file.path.name))
    return found or excluded


def _standing_in(
    listed: list[tuple[int, Path]], summary: HourSummary, start_ns: int, end_ns: int, last_s: int
) -> list[CaptureFile]:
    """A file of a passed-over hour whose span meets the window, marked ``excluded``; [] if none does."""
    for epoch, path in listed:
        span = summary.span_of(capture_name(path.name))
        if epoch <= last_s and span is not None and span[1] >= start_ns and span[0] <= end_ns:
            return [CaptureFile(path, epoch, span, None, excluded=True)]
    return []


def refresh_summary(directory: Path, prefix: str, *, rebuild: bool = False) -> int | None:
    """Bring the summary of the hour directory ``directory`` up to its indexed captures (hold the tree lock).

    The current summary is kept and the keys of captures it does not name are added (a pass of the
    filer files a few); ``rebuild`` (``reindex`` rebuilt indexes here), a capture gone from it, or a
    summary that cannot be read makes it anew from every index. Captures without a current index
    are left out: they are searched file by file. Returns the summary's size (None: none written).
    """
    names = {capture_name(path.name): path for _, path in _captures_in(directory, prefix)}
    where = summary_path(directory, prefix)
    old = None if rebuild else read_summary(where)
    if old is not None and not set(old.names) <= names.keys():
        old = None
    parts = [("", old)] if old is not None else []
    covered = set(old.names) if old is not None else set()
    added = 0
    for name, path in names.items():
        if name in covered:
            continue
        index = open_index(path)
        if index is not None and index.usable_for_queries:
            try:
                parts.append((name, index_keys(index)))
            except IndexUnusable:  # damaged: searched file by file, rebuilt by reindex
                continue
            added += 1
    if old is not None and not added:
        return None
    if not parts:
        where.unlink(missing_ok=True)
        return None
    return write_summary(where, merged(parts))


def start_answer(
    start_ns: int, end_ns: int, answer: Callable[[list[CaptureFile]], Generator[bytes, None, None]], **tree
) -> tuple[bytes, Generator[bytes, None, None]] | None:
    """Start ``answer`` over the window's files: (its first chunk, the rest); None when no file covers it.

    Producing the first chunk opens the files, so a file the filer moves between the listing and
    its opening shows up here (FileNotFoundError): the window is then listed again, once. Any other
    error of the first chunk is raised, the answer closed.
    """
    retried = False
    while True:
        files = captures_for_window(start_ns, end_ns, **tree)
        if not files:
            return None
        chunks = answer(files)
        try:
            return next(chunks, b""), chunks
        except FileNotFoundError:
            chunks.close()
            if retried:
                raise
            retried = True
        except BaseException:
            chunks.close()
            raise
