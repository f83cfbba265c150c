"""Bringing older hours' summaries up to date, a little in every filer pass.

A filing pass writes the summary of the hours it files into. Hours filed before an upgrade that
changed the summary's version (or whose summary is missing, damaged, or older than one of its
indexes) are searched file by file until their summary is rewritten. The filer does that here,
after its filing pass and under the same tree lock, newest hours first, within a budget per pass
(``HOURS_PER_PASS`` rewritten, ``CPU_PER_PASS`` seconds of CPU): a large tree is brought up to
date over a few passes, and filing never waits long behind it.

Where a catch-up is (``PAR_DATA_DIR/summaries.json``): the summary version it brings hours up to
and the hour below which it goes on, or that it is done. A done catch-up costs one small read a
pass; a new summary version, or a summary the filer could not write, starts it again from the
newest hour. The file is replaced atomically, each summary too (``store.refresh_summary``), so a
kill at any moment leaves an hour's old summary or its new one (and maybe a temporary file, which
the hour's next rewrite removes); the note is written at the end of a pass, so the next pass
goes on from where the killed one started.
``manage.py reindex`` stays the way to do every hour at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.durable import atomic_write
from engine.formats.source import capture_name
from engine.index import index_path
from engine.index.summary import SUMMARY_VERSION, read_summary, summary_path
from node import retention, store
from node.faults import crash_point

log = logging.getLogger("node.filer")

STATE_FILE = "summaries.json"
HOURS_PER_PASS = 24  # summaries rewritten at most per pass
CPU_PER_PASS = 1.0  # seconds of CPU at most per pass (looking at hours counts too)


@dataclass
class CatchUp:
    rewritten: int = 0  # summaries written in this pass
    checked: int = 0  # hours looked at in this pass
    done: bool = False  # every hour's summary is current (or nothing was to be done)
    below: tuple[int, int, int, int] | None = None  # where the next pass goes on

    def line(self) -> str:
        text = f"Summaries: {self.rewritten} rewritten, {self.checked} hours looked at"
        if self.done:
            return text + "; every hour is up to date"
        where = "/".join(f"{part:02d}" for part in self.below) if self.below else "the newest hour"
        return text + f"; the next pass goes on below {where}"


def read_state(data_dir: Path) -> dict:
    try:
        state = json.loads((Path(data_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("version") == SUMMARY_VERSION else {}


def _write_state(data_dir: Path, state: dict) -> None:
    path = Path(data_dir) / STATE_FILE
    try:
        with atomic_write(path, mode=0o600) as out:
            out.write(json.dumps(state).encode())
    except OSError as exc:
        log.warning("Cannot keep where the summaries' catch-up is in %s: %s", path, exc.strerror)


def restart(data_dir: Path) -> None:
    """Look at every hour again from the newest (a summary could not be written)."""
    try:
        (Path(data_dir) / STATE_FILE).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("Cannot reset the summaries' catch-up in %s: %s", data_dir, exc.strerror)


def is_current(directory: Path, prefix: str) -> bool:
    """Whether the hour directory's summary is of this version, readable, names exactly its indexed
    captures, and is not older than any of their indexes (an hour with no index needs none)."""
    indexed: dict[str, int] = {}
    for path in store.captures_in(directory, prefix):
        try:
            indexed[capture_name(path.name)] = os.stat(index_path(path)).st_mtime_ns
        except OSError:
            continue  # no index: searched file by file whatever the summary says
    if not indexed:
        return True
    where = summary_path(directory, prefix)
    summary = read_summary(where)
    if summary is None or set(summary.names) != indexed.keys():
        return False
    try:
        return os.stat(where).st_mtime_ns >= max(indexed.values())
    except OSError:
        return False


def catch_up(
    filer_dir: Path,
    data_dir: Path,
    prefix: str,
    *,
    hours: int = HOURS_PER_PASS,
    cpu_s: float = CPU_PER_PASS,
    stop: threading.Event | None = None,
) -> CatchUp:
    """Rewrite the out-of-date summaries of older hours, newest first, within the budget (hold the tree lock)."""
    from node.filer import remove_stale_temps  # node.filer runs this module

    outcome = CatchUp()
    state = read_state(data_dir)
    if state.get("done"):
        outcome.done = True
        return outcome
    below = tuple(state["below"]) if isinstance(state.get("below"), list) else None
    started = time.process_time()
    for hour in reversed(retention.hour_dirs(filer_dir)):
        if below is not None and hour.hour >= below:
            continue
        spent = outcome.rewritten >= hours or time.process_time() - started >= cpu_s
        if outcome.checked and (spent or (stop is not None and stop.is_set())):  # one hour at least: progress
            outcome.below = below
            break
        outcome.checked += 1
        if not is_current(hour.path, prefix):
            try:
                remove_stale_temps(hour.path, prefix)  # a crash while rewriting it left its temporary file
                store.refresh_summary(hour.path, prefix, rebuild=True)
            except OSError as exc:
                log.warning(
                    "Cannot rewrite the summary of %s: %s; it is searched file by file (reindex rewrites it)",
                    hour.path,
                    exc,
                )
            else:
                outcome.rewritten += 1
                log.info("Rewrote the summary of %s", hour.path)
                crash_point("summarised")
        below = hour.hour
    else:
        outcome.done = True
    if outcome.done:
        _write_state(data_dir, {"version": SUMMARY_VERSION, "done": True})
    else:
        _write_state(data_dir, {"version": SUMMARY_VERSION, "below": list(below) if below else None})
    if outcome.rewritten or not outcome.done or state.get("below") is not None:  # silent when nothing was due
        log.info(outcome.line())
    return outcome
