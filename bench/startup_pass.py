"""A filer pass that files one new one-minute capture, in a resident process (``runfiler --loop``).

Run by bench/startup.py in the tree measured (its working directory), as a node's process:

    python bench/startup_pass.py prepare DIR        # an hour of filed captures, summarised; prints nothing
    python bench/startup_pass.py resident DIR RUNS  # prints JSON: the CPU of each part, in ms

``prepare`` files 50 one-minute captures of a small sensor into one hour directory (indexed, the
hour summarised) below ``DIR/filed``, and writes the live file (minute 59) into ``DIR/capture``.
``next_capture`` writes the next new minute beside it. ``resident`` prepares, runs a first pass
(which loads the compiled index code, once per process), then times ``RUNS`` passes as
``runfiler --loop`` runs them (the filing pass, and the tier pass when it is due), each filing one
new minute;
and, in the same process, the index build of such a capture alone and the hour summary's update
for one more capture alone.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the tree measured, not necessarily this script's

import pcapgen as g  # noqa: E402

NS = 10**9
HOUR = 1_700_002_800  # an hour's start (UTC)
FILED_BEFORE = 50  # minutes of the hour already filed
LIVE = 59  # the minute still being written
FLOWS = g.mixed_flows(120, seed=1)[:4]


def capture_bytes(minute: int) -> list:
    epoch = HOUR + 60 * minute
    return list(g.mixed_traffic(epoch * NS, 60, FLOWS, pps=0.2, seed=minute))


def next_capture(root: Path, minute: int) -> None:
    """Write minute ``minute``'s capture into the capture directory, as the capture tool would."""
    g.write_pcap(root / "capture" / f"pcap.{HOUR + 60 * minute}", capture_bytes(minute))


def prepare(root: Path) -> None:
    from engine.index import build_index
    from node import store

    (root / "capture").mkdir(parents=True)
    hour = store.hour_dir(root / "filed", HOUR, True)
    hour.mkdir(parents=True)
    for minute in range(FILED_BEFORE):
        path = hour / f"pcap.{HOUR + 60 * minute}"
        g.write_pcap(path, capture_bytes(minute))
        build_index(path)
    store.refresh_summary(hour, "pcap")
    g.write_pcap(root / "capture" / f"pcap.{HOUR + 60 * LIVE}", [])


def cpu_ms(call) -> float:
    before = time.process_time()
    call()
    return (time.process_time() - before) * 1000


def resident(root: Path, runs: int) -> dict[str, float]:
    import django

    django.setup()
    from django.conf import settings

    from engine.index import build_index
    from node import filer, store
    from node.filer import FilerOptions
    from node.jobs import cores_available
    from node.tiers import archive_options

    prepare(root)
    options = FilerOptions(
        capture_dir=root / "capture",
        filer_dir=root / "filed",
        data_dir=settings.PAR_DATA_DIR,
        jobs=cores_available(),  # runfiler's default
        compress=settings.PAR_COMPRESS,
        level=settings.PAR_COMPRESS_LEVEL,
        archive=archive_options(),
    )

    # As node.filer.run_loop runs its passes: a tier pass after the first filing pass, and then after
    # every one, or (where the tree has TIER_INTERVAL) after one every 10 minutes, so not in this run.
    every_pass = not hasattr(filer, "TIER_INTERVAL")
    passes_run = []

    def one_pass() -> None:
        summary = filer.run_pass(options)
        assert summary.files == 1 and not summary.failed, summary
        if every_pass or not passes_run:
            filer.tier_pass(options)
        passes_run.append(1)

    minute = FILED_BEFORE
    next_capture(root, minute)
    first = cpu_ms(one_pass)
    passes = []
    for _ in range(min(runs, LIVE - FILED_BEFORE - 1)):
        minute += 1
        next_capture(root, minute)
        passes.append(cpu_ms(one_pass))
    probe = root / "probe"
    g.write_pcap(probe, capture_bytes(FILED_BEFORE))
    builds = [cpu_ms(lambda: build_index(probe)) for _ in range(20)]
    # The summary's update alone: the hour's summary without its newest capture, brought up to it.
    hour = store.hour_dir(root / "filed", HOUR, True)
    where = store.summary_path(hour, "pcap")
    newest = store.stored_capture(hour, f"pcap.{HOUR + 60 * minute}")
    assert newest is not None
    updates = []
    for _ in range(10):
        full = where.read_bytes()
        aside = root / "aside"
        os.replace(newest, aside)
        store.refresh_summary(hour, "pcap", rebuild=True)
        os.replace(aside, newest)
        updates.append(cpu_ms(lambda: store.refresh_summary(hour, "pcap")))
        where.write_bytes(full)
    return {
        "first_pass": first,
        "pass": statistics.median(passes),
        "build": statistics.median(builds),
        "summary": statistics.median(updates),
    }


def main() -> None:
    what, root = sys.argv[1], Path(sys.argv[2])
    if what == "prepare":
        import django

        django.setup()
        prepare(root)
    elif what == "resident":
        print(json.dumps(resident(root, int(sys.argv[3]))))
    else:
        sys.exit(f"unknown: {what}")


if __name__ == "__main__":
    main()
