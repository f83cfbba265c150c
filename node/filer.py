"""Filing finished capture files: index each one into its hour directory, then move it there.

Crash safety: a step either happened completely or not at all, and a rerun redoes what is missing.

1. The index is built into the destination hour directory (temporary dot-name, fsync, rename).
2. The capture is moved by ``os.replace`` when both directories are on one file system. Across
   file systems it is copied to ``.<name>.filing`` in the destination, fsynced, given the source's
   times, renamed to its name, and only then removed from the capture directory (node/move.py).

With ``--jobs N`` the index builds of step 1 run in N worker processes at once (node/jobs.py);
every other step stays in the filer's own process, file after file, so the contract is the same.

A rerun after a crash before the move finds the capture still in the capture directory and files it
again (the index is rebuilt, a partial copy is replaced). After a crash between the rename and the
removal it finds the same bytes already filed and only removes the source. So every capture ends up
filed exactly once. Stale temporary files (our ``.<name>.filing`` copies, the index builder's
``.<name>.idx.<pid>.tmp``) are removed from an hour directory before a file is filed into it, and by
``reindex`` (node/reindex.py) from every directory it visits.

Locks (``engine.durable.flock``: released by the kernel when the process dies, so ``kill -9``
leaves nothing that blocks the next run; the lock files are never unlinked):

- ``PAR_DATA_DIR/filer.lock`` is held by a running filer for its whole life: a second one exits.
- ``PAR_DATA_DIR/filer-tree.lock`` is held while anything writes into the filer tree (a filing
  pass, retention, ``reindex``), so temporary files there are only ever cleaned by their owner.

With ``PAR_COMPRESS=zstd`` (``--compress zstd``) the worker also writes the capture compressed into
the hour directory (``<name>.zst``, temporary dot-name, fsync, rename) after its index; the source
is then removed instead of moved. A rerun finding the compressed copy and the source (the same
capture, by its fingerprint) only removes the source. ``--loop`` passes then compress what is
still raw in the tree and archive what is old enough (node/tiers.py).

Steps named with ``crash_point()`` are where the crash tests kill the filer (node/faults.py).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, Future
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from engine import durable
from engine.compress import compress_capture, compressed_path
from engine.durable import fsync_dir, make_dirs
from engine.formats import CaptureError
from engine.formats.seekable import LEVEL
from engine.formats.source import ARCHIVED_SUFFIX, ZSTD_SUFFIX
from engine.index import TEMP_INDEX_PATTERN, FlowIndex, IndexUnusable, build_index, index_path, open_index
from engine.index.opening import capture_fingerprint
from engine.index.summary import SUMMARY_SUFFIX
from node import catchup, filerstats, retention, store, tiers
from node.faults import crash_point
from node.jobs import Workers
from node.move import COPY_SUFFIX, move_capture, same_content
from node.tiers import ArchiveOptions

log = logging.getLogger("node.filer")
T = TypeVar("T")

RUNNER_LOCK = "filer.lock"
TREE_LOCK = "filer-tree.lock"


class FilerBusy(Exception):
    """Another process holds the filer lock."""


class FilingConflict(Exception):
    """The capture's place is taken (by another file of its name, a symbolic link); it stays put."""


@dataclass
class FilerOptions:
    capture_dir: Path
    filer_dir: Path
    data_dir: Path
    prefix: str = "pcap"
    utc: bool = True
    simulate: bool = False
    keep_free: float | None = None  # percent of the filer file system to keep free
    max_age_hours: float | None = None
    jobs: int = 1  # index builds at once, in worker processes (node/jobs.py)
    compress: str = "none"  # "zstd": filed captures are stored compressed (<name>.zst; docs/storage.md)
    level: int = LEVEL  # the zstd level
    archive: ArchiveOptions | None = None  # archive aged captures in --loop passes (node/tiers.py)
    # Older hours' summaries brought up to date after each pass, at most this much (node/catchup.py).
    summary_hours: int = catchup.HOURS_PER_PASS
    summary_cpu_s: float = catchup.CPU_PER_PASS


@dataclass
class PassSummary:
    files: int = 0
    bytes: int = 0
    packets: int = 0
    unindexed: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    deleted: retention.Deleted = field(default_factory=retention.Deleted)
    summaries: catchup.CatchUp | None = None  # older hours' summaries brought up to date after filing

    def line(self, simulate: bool = False) -> str:
        verb = "Would file" if simulate else "Filed"
        text = f"{verb} {self.files} files, {self.bytes} bytes, {self.packets} packets"
        text += f" in {self.seconds:.2f} seconds"
        if self.unindexed:
            text += f"; {self.unindexed} without an index (unparseable)"
        if self.failed:
            text += f"; {len(self.failed)} failed: {', '.join(self.failed)}"
        if self.deleted.dirs:
            verb = "would delete" if simulate else "deleted"
            text += f"; {verb} {self.deleted.dirs} hour directories ({self.deleted.bytes} bytes)"
        return text


# --- locks and temporary files ------------------------------------------------


def runner_lock(data_dir: Path) -> AbstractContextManager[None]:
    """The lock a running filer holds for its whole life; FilerBusy if another has it."""
    return _filer_lock(Path(data_dir) / RUNNER_LOCK, wait=False)


def tree_lock(data_dir: Path) -> AbstractContextManager[None]:
    """The lock held while writing into the filer tree; waits for the holder."""
    return _filer_lock(Path(data_dir) / TREE_LOCK, wait=True)


@contextmanager
def _filer_lock(path: Path, *, wait: bool) -> Iterator[None]:
    try:
        with durable.flock(path, wait=wait):
            yield
    except durable.LockBusy as exc:
        raise FilerBusy(f"another filer is running ({exc})") from None


def _temp_name(prefix: str) -> re.Pattern[str]:
    """Names of the temporary files written into the tree: our copies, the index builder's, the compressor's,
    the archiver's records and the hour summaries."""
    capture = rf"\.{re.escape(prefix)}\.[0-9]+"
    summary = rf"\.{re.escape(prefix + SUMMARY_SUFFIX)}\.[0-9]+{re.escape(durable.TEMP_SUFFIX)}"
    compressing = re.escape(ZSTD_SUFFIX) + r"\.[0-9]+" + re.escape(durable.TEMP_SUFFIX)
    recording = re.escape(ARCHIVED_SUFFIX) + r"\.[0-9]+" + re.escape(durable.TEMP_SUFFIX)
    return re.compile(
        rf"{capture}(?:{re.escape(COPY_SUFFIX)}|{TEMP_INDEX_PATTERN}|{compressing}|{recording})|{summary}"
    )


def remove_stale_temps(directory: Path, prefix: str) -> list[Path]:
    """Remove temporary files left in ``directory`` by a crash (hold the tree lock: no writer is busy)."""
    pattern = _temp_name(prefix)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
            log.info("Removed %s, left by an interrupted run", entry.path)
    return removed


# --- filing -------------------------------------------------------------------


@dataclass
class Filed:
    dest: Path
    bytes: int
    packets: int
    indexed: bool


@dataclass
class Planned:
    """A capture ready to be filed: its hour directory exists and holds no stale temporary file."""

    src: Path
    dest: Path
    bytes: int


def build_outcome(src: Path, out: Path) -> int | str:
    """Build ``src``'s index as ``out``: its packets, or why the file cannot be indexed.

    OSError (e.g. no space for the index) propagates: the file then waits for the next pass. This
    is the work a worker process does (node/jobs.py).
    """
    crash_point("indexing")
    try:
        return build_index(src, out).packets
    except OSError:
        raise
    except Exception as exc:
        # CaptureError, or any other surprise of the engine on a strange file: the data is still kept.
        return str(exc) if isinstance(exc, CaptureError) else f"{type(exc).__name__}: {exc}"


def build_and_compress(src: Path, out: Path, compressed: Path | None, level: int) -> int | str:
    """``build_outcome``, then (``compressed`` given) ``src`` compressed to ``compressed`` (atomically).

    The work of a worker process when the filer compresses: the compressed copy is in place when
    this returns, the source not yet removed (``finish_filing`` does that).
    """
    outcome = build_outcome(src, out)
    if compressed is not None:
        crash_point("compressing")
        compress_capture(src, compressed, level=level)
    return outcome


def index_into(src: Path, dest: Path, outcome: int | str | None = None) -> tuple[bool, int]:
    """Build ``src``'s index as ``dest``'s (or take ``outcome``, built elsewhere); (indexed, packets)."""
    if outcome is None:
        outcome = build_outcome(src, index_path(dest))
    if isinstance(outcome, str):
        log.warning(
            "Cannot index %s: %s; it is filed without an index and scanned at query time", src, outcome
        )
        stale = index_path(dest)
        if stale.exists():  # an index must describe the capture beside it
            stale.unlink()
        return False, 0
    damaged_index_logged(src, index_path(dest))
    return True, outcome


def damaged_index_logged(src: Path, index: Path) -> None:
    """One warning line when the index just built says its capture is damaged (and where)."""
    try:
        damaged_at = FlowIndex(index).damaged_at
    except (OSError, IndexUnusable):
        return
    if damaged_at is not None:
        log.warning(
            "%s is damaged at byte offset %d: indexed up to the damage, queries read the records before it",
            src,
            damaged_at,
        )


def summarise(directory: Path, prefix: str, *, rebuild: bool = False) -> bool:
    """Bring an hour directory's summary up to its indexes; a failure is logged (queries then open each index)."""
    try:
        store.refresh_summary(directory, prefix, rebuild=rebuild)
    except OSError as exc:
        log.warning("Cannot write the summary of %s: %s; its files are searched one by one", directory, exc)
        return False
    return True


def plan_filing(src: Path, options: FilerOptions, cleaned: set[Path] | None = None) -> Planned | Filed:
    """Log and prepare the filing of ``src`` (hold the tree lock); Filed when nothing is left to index.

    ``cleaned``: the hour directories already rid of stale temporary files in this pass, which are
    not cleaned again (a worker may be writing an index there now).
    """
    epoch = store.capture_epoch(src, options.prefix)
    if epoch is None:
        raise FileNotFoundError(errno.ENOENT, "not a capture file (any more)", str(src))
    dest_dir = store.hour_dir(options.filer_dir, epoch, options.utc)
    dest = dest_dir / src.name
    size = src.stat().st_size
    log.info("Processing: %s", src.name)
    log.info("Moving %s => %s/", src, dest_dir)
    link = store.linked_in_tree(options.filer_dir, dest_dir)
    if link is not None:  # what it leads to would be neither served nor deleted (node/store.py)
        raise FilingConflict(f"{link} is a symbolic link in the filer tree; {src} is left in place")
    if options.simulate:
        return Filed(dest, size, 0, False)
    make_dirs(dest_dir)
    if cleaned is None or dest_dir not in cleaned:
        remove_stale_temps(dest_dir, options.prefix)
        if cleaned is not None:
            cleaned.add(dest_dir)
    zst = compressed_path(dest)
    if zst.exists():
        # Only a crash between placing the compressed copy and removing the source leaves both.
        if capture_fingerprint(zst) != capture_fingerprint(src):
            raise FilingConflict(f"{zst} already exists with other content; {src} is left in place")
        log.info("%s is already filed compressed (the last run stopped before removing it); removing it", src)
        indexed, packets = (True, 0) if open_index(zst) is not None else index_into(src, dest)
        src.unlink()
        fsync_dir(src.parent)
        return Filed(zst, size, packets, indexed)
    if dest.exists():
        # Only a crash between placing a cross-device copy and removing the source leaves both.
        if not same_content(src, dest):
            raise FilingConflict(f"{dest} already exists with other content; {src} is left in place")
        log.info("%s is already filed (the last run stopped before removing it); removing the source", src)
        indexed, packets = index_into(dest, dest)
        src.unlink()
        fsync_dir(src.parent)
        return Filed(dest, size, packets, indexed)
    return Planned(src, dest, size)


def finish_filing(planned: Planned, outcome: int | str, compressed: bool = False) -> Filed:
    """Move a capture whose index was built (``outcome`` of build_outcome) into its hour directory.

    ``compressed``: its compressed copy is already in place (``build_and_compress``), so the source
    is removed instead of moved.
    """
    indexed, packets = index_into(planned.src, planned.dest, outcome)
    crash_point("indexed")
    if compressed:
        planned.src.unlink()
        fsync_dir(planned.src.parent)
        crash_point("moved")
        return Filed(compressed_path(planned.dest), planned.bytes, packets, indexed)
    move_capture(planned.src, planned.dest)
    crash_point("moved")
    return Filed(planned.dest, planned.bytes, packets, indexed)


def check_dirs(options: FilerOptions) -> None:
    """Raise NotADirectoryError naming a missing capture or filer directory."""
    for what, path in (("capture directory", options.capture_dir), ("filer directory", options.filer_dir)):
        if not Path(path).is_dir():
            raise NotADirectoryError(f"{what} {path} does not exist or is not a directory")


def _warn_future(paths: list[Path], shown: int = 5) -> None:
    names = ", ".join(path.name for path in paths[:shown])
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    log.warning(
        "Leaving alone %d capture files named more than an hour in the future (a wrong clock, or files "
        "from elsewhere?): %s%s",
        len(paths),
        names,
        more,
    )


def _attempt(src: Path, summary: PassSummary, step: Callable[[], T]) -> T | None:
    """``step()`` for ``src``; None, logged and (unless the file just went away) counted failed."""
    try:
        return step()
    except FileNotFoundError:
        if not src.exists():
            log.warning("%s disappeared before it was filed", src)
            return None
        log.error("Cannot file %s: a directory disappeared meanwhile", src)
    except BrokenExecutor:  # a worker of the pool died (BrokenProcessPool)
        log.error("Cannot file %s: the worker process indexing it died; it is filed by the next pass", src)
    except (OSError, FilingConflict) as exc:
        log.error("Cannot file %s: %s", src, exc)
    except Exception:
        # A surprise on one file (a name no clock can place, ...) must not fail every pass.
        log.exception("Cannot file %s", src)
    summary.failed.append(src.name)
    return None


def _count(summary: PassSummary, filed: Filed | None, simulate: bool) -> None:
    if filed is None:
        return
    summary.files += 1
    summary.bytes += filed.bytes
    summary.packets += filed.packets
    if not filed.indexed and not simulate:
        summary.unindexed += 1


def file_pending(options: FilerOptions, stop: threading.Event | None = None) -> PassSummary:
    """File every finished capture file once (hold the tree lock unless simulating).

    Files are planned, logged and moved one by one in time order; their indexes are built by
    ``options.jobs`` worker processes at once (node/jobs.py), at most that many files ahead.
    """
    started = time.monotonic()
    summary = PassSummary()
    listed = store.capture_dir_files(options.capture_dir, options.prefix)
    if listed.future:
        _warn_future(listed.future)
    cleaned: set[Path] = set()
    building: deque[tuple[Planned, Future[int | str]]] = deque()

    compress = options.compress == "zstd" and not options.simulate
    touched: set[Path] = set()  # hour directories filed into: their summaries are brought up to date

    def finish_oldest() -> None:
        planned, future = building.popleft()
        filed = _attempt(planned.src, summary, lambda: finish_filing(planned, future.result(), compress))
        if filed is not None:
            touched.add(filed.dest.parent)
        _count(summary, filed, False)

    # No more workers than files: one new capture (a pass a minute's usual work) is indexed in this
    # process, without forking a pool for it.
    with Workers(1 if options.simulate else min(options.jobs, len(listed.pending))) as workers:
        for src in listed.pending:
            if stop is not None and stop.is_set():
                log.info("Stopping before %s", src.name)
                break
            planned = _attempt(src, summary, partial(plan_filing, src, options, cleaned))
            if not isinstance(planned, Planned):
                if planned is not None and not options.simulate:
                    touched.add(planned.dest.parent)
                _count(summary, planned, options.simulate)
                continue
            out = index_path(planned.dest)
            if compress:
                zst = compressed_path(planned.dest)
                work = workers.submit(build_and_compress, planned.src, out, zst, options.level)
            else:
                work = workers.submit(build_outcome, planned.src, out)
            building.append((planned, work))
            if len(building) >= workers.size:
                finish_oldest()
        while building:
            finish_oldest()
    for directory in sorted(touched):
        if not summarise(directory, options.prefix):
            catchup.restart(options.data_dir)  # a later pass's catch-up writes it
    summary.seconds = time.monotonic() - started
    return summary


def run_pass(options: FilerOptions, stop: threading.Event | None = None) -> PassSummary:
    """One filer pass: retention, then filing; under the tree lock unless simulating."""
    check_dirs(options)
    if options.simulate:
        return _pass(options, stop)
    with tree_lock(options.data_dir):
        crash_point("locked")
        summary = _pass(options, stop)
        if not (stop is not None and stop.is_set()):
            summary.summaries = catchup.catch_up(
                options.filer_dir,
                options.data_dir,
                options.prefix,
                hours=options.summary_hours,
                cpu_s=options.summary_cpu_s,
                stop=stop,
            )
        if summary.files or summary.deleted.dirs or (summary.summaries and summary.summaries.rewritten):
            store.bump_tree_stamp(options.filer_dir)
        filerstats.record_pass(options.data_dir, summary)
        return summary


def _pass(options: FilerOptions, stop: threading.Event | None) -> PassSummary:
    deleted = retention.enforce_retention(
        options.filer_dir,
        utc=options.utc,
        keep_free=options.keep_free,
        max_age_hours=options.max_age_hours,
        simulate=options.simulate,
        prefix=options.prefix,
    )
    summary = file_pending(options, stop)
    summary.deleted = deleted
    return summary


def tier_pass(options: FilerOptions, stop: threading.Event | None = None) -> tiers.TierSummary:
    """Compress what is filed raw (with ``compress``), archive what is old enough (with ``archive``),
    under the tree lock; the outcome is kept for /status and /metrics."""
    summary = tiers.TierSummary()
    if options.simulate or (options.compress != "zstd" and options.archive is None):
        return summary
    with tree_lock(options.data_dir):
        if options.compress == "zstd":
            summary = tiers.compress_tree(options.filer_dir, options.prefix, level=options.level, stop=stop)
        if options.archive is not None:
            archived = tiers.archive_tree(options.filer_dir, options.prefix, options.archive, stop=stop)
            summary.archived, summary.archived_bytes = archived.archived, archived.archived_bytes
            summary.expired, summary.backlog = archived.expired, archived.backlog
            summary.archive_pass = True
            summary.errors += archived.errors
        if summary.compressed or summary.archived or summary.expired:
            # captures changed names: listings kept in memory by the stamp must end
            store.bump_tree_stamp(options.filer_dir)
        filerstats.record_tiers(options.data_dir, summary)
    return summary


# A tier pass lists every hour directory of the tree (about 150 ms of CPU for a week of one-minute
# captures, growing with retention), and what it does is not urgent: what the filer files is already
# compressed, and ages for the archive count in hours. So it follows a filing pass at most this often.
TIER_INTERVAL = 600.0


def run_loop(options: FilerOptions, interval: float, stop: threading.Event) -> None:
    """Run passes ``interval`` seconds apart until ``stop`` is set; a failed pass is logged, not fatal.

    The first filing pass, and then one every ``TIER_INTERVAL`` seconds (or ``interval``, if longer),
    is followed by a tier pass (``tier_pass``): compression and the archive.
    """
    tiers_due = time.monotonic()
    while not stop.is_set():
        try:
            log.info(run_pass(options, stop).line(options.simulate))
            tiered = options.compress == "zstd" or options.archive is not None
            if not stop.is_set() and tiered and time.monotonic() >= tiers_due:
                tiers_due = time.monotonic() + max(interval, TIER_INTERVAL)
                log.info(tier_pass(options, stop).line())
        except Exception:
            log.exception("The filing pass failed; the next one starts in %g seconds", interval)
        stop.wait(interval)
    log.info("Filer stopped")
