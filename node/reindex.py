"""Rebuilding indexes: ``manage.py reindex`` builds the missing or outdated index of filed captures.

It writes into the filer tree under the same tree lock as a filing pass (node/filer.py), and removes
the temporary files a crash left in every directory it visits. Each index is written atomically and
the directory fsynced (engine/durable.py), so a kill at any moment leaves the old index or the new.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.durable import fsync_dir
from engine.index import index_is_current
from node import store
from node.filer import index_into, remove_stale_temps, tree_lock

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
    paths: list[Path], *, prefix: str, data_dir: Path, skip_dir: Path | None = None, force: bool = False
) -> ReindexSummary:
    """Build the missing or outdated index of every capture file under ``paths``."""
    summary = ReindexSummary()
    for directory, captures in captures_under(paths, prefix).items():
        if skip_dir is not None and directory.resolve() == Path(skip_dir).resolve():
            log.info("Skipping the capture directory %s: its files are indexed when filed", directory)
            continue
        with tree_lock(data_dir):
            remove_stale_temps(directory, prefix)
            for capture in captures:
                _reindex_one(capture, summary, force)
            fsync_dir(directory)  # the renamed indexes survive a crash too
    return summary


def _reindex_one(capture: Path, summary: ReindexSummary, force: bool) -> None:
    try:
        if not force and index_is_current(capture):
            summary.current += 1
            return
        log.info("Indexing %s", capture)
        indexed, _ = index_into(capture, capture)
    except OSError as exc:
        log.error("Cannot index %s: %s", capture, exc)
        summary.failed.append(str(capture))
        return
    if indexed:
        summary.built += 1
    else:
        summary.unparseable += 1
