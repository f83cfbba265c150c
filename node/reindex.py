"""Rebuilding indexes: ``manage.py reindex`` builds the missing or outdated index of filed captures.

Each directory's summary (``engine.index.summary``) is brought up to date after it, made anew
where an index was rebuilt.

It writes into the filer tree under the same tree lock as a filing pass (node/filer.py), and removes
the temporary files a crash left in every directory it visits. Each index is written atomically, its
directory fsynced (engine/durable.py), so a kill at any moment leaves the old index or the new.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass, field
from pathlib import Path

from engine.index import index_is_current, index_path
from node import store
from node.filer import build_outcome, index_into, remove_stale_temps, summarise, tree_lock
from node.jobs import Workers

log = logging.getLogger("node.filer")


@dataclass
class ReindexSummary:
    built: int = 0
    current: int = 0
    unparseable: int = 0
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = f"Built {self.built} indexes, {self.current} already current"
        if self.unparseable:
            text += f", {self.unparseable} captures cannot be parsed (scanned at query time)"
        if self.failed:
            text += f"; {len(self.failed)} failed: {', '.join(self.failed)}"
        return text


def captures_under(paths: list[Path], prefix: str) -> dict[Path, list[Path]]:
    """Capture files named or found (recursively) under ``paths``, grouped by directory."""
    found: dict[Path, list[Path]] = {}
    for path in paths:
        if path.is_dir():
            for root, dirs, _ in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                listed = store.capture_files(root, prefix)
                if listed:
                    found.setdefault(Path(root), []).extend(listed)
        elif store.capture_epoch(path, prefix) is not None:
            found.setdefault(path.parent, []).append(path)
        else:
            raise FileNotFoundError(
                f"{path} is neither a directory nor a capture file named {prefix}.<epoch>"
            )
    return found


def reindex(
    paths: list[Path],
    *,
    prefix: str,
    data_dir: Path,
    skip_dir: Path | None = None,
    force: bool = False,
    jobs: int = 1,
    filer_dir: Path | None = None,
) -> ReindexSummary:
    """Build the missing or outdated index of every capture file under ``paths``, ``jobs`` at once.

    ``filer_dir``: the tree whose stamp is rewritten after (``store.bump_tree_stamp``).
    """
    summary = ReindexSummary()
    with Workers(jobs) as workers:
        for directory, captures in captures_under(paths, prefix).items():
            if skip_dir is not None and directory.resolve() == Path(skip_dir).resolve():
                log.info("Skipping the capture directory %s: its files are indexed when filed", directory)
                continue
            with tree_lock(data_dir):
                remove_stale_temps(directory, prefix)
                built = summary.built
                _reindex_dir(captures, summary, force, workers)
                # The summary of an hour whose indexes were rebuilt is made anew from them.
                summarise(directory, prefix, rebuild=summary.built > built)
    if filer_dir is not None and Path(filer_dir).is_dir():
        with tree_lock(data_dir):
            store.bump_tree_stamp(filer_dir)
    return summary


def _reindex_dir(captures: list[Path], summary: ReindexSummary, force: bool, workers: Workers) -> None:
    """Index the captures of one directory, at most ``workers.size`` at once, counted in order."""
    building: deque[tuple[Path, Future[int | str]]] = deque()
    for capture in captures:
        try:
            if not force and index_is_current(capture):
                summary.current += 1
                continue
        except OSError as exc:
            _failed(capture, exc, summary)
            continue
        log.info("Indexing %s", capture)
        building.append((capture, workers.submit(build_outcome, capture, index_path(capture))))
        if len(building) >= workers.size:
            _count(*building.popleft(), summary)
    while building:
        _count(*building.popleft(), summary)


def _count(capture: Path, outcome: Future[int | str], summary: ReindexSummary) -> None:
    try:
        indexed, _ = index_into(capture, capture, outcome.result())
    except (OSError, BrokenExecutor) as exc:  # BrokenExecutor: a worker died (BrokenProcessPool)
        _failed(capture, exc, summary)
        return
    if indexed:
        summary.built += 1
    else:
        summary.unparseable += 1


def _failed(capture: Path, exc: BaseException, summary: ReindexSummary) -> None:
    reason = "the worker process indexing it died" if isinstance(exc, BrokenExecutor) else exc
    log.error("Cannot index %s: %s", capture, reason)
    summary.failed.append(str(capture))
