"""The filer's catch-up of older hours' summaries (node/catchup.py): its CPU per pass.

    python bench/summary_catchup.py [HOURS] [FILES_PER_HOUR]

Files HOURS hours of FILES_PER_HOUR small one-minute captures (indexed, summarised) into a
temporary tree, then times, in one process: a first catch-up over a tree already current, a pass
once the catch-up is done, and the passes that bring every hour's summary back after all of them
were turned into version 1 (as after an upgrade), with the default budget (24 hours a pass).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsite.settings")
os.environ.setdefault("PAR_ROLE", "node")

import django  # noqa: E402

django.setup()

import pcapgen  # noqa: E402
from engine.index import build_index  # noqa: E402
from engine.index.summary import summary_path  # noqa: E402
from node import catchup, filer, store  # noqa: E402

T = 1432321200
NS = 1_000_000_000


def tree(root: Path, hours: int, per_hour: int) -> list[Path]:
    dirs = []
    for h in range(hours):
        directory = store.hour_dir(root / "filed", T + h * 3600, True)
        directory.mkdir(parents=True)
        for n in range(per_hour):
            epoch = T + h * 3600 + n * 60
            path = directory / f"pcap.{epoch}"
            pcapgen.write_pcap(path, list(pcapgen.mixed_traffic(epoch * NS, 2, 8, pps=20, seed=epoch)))
            build_index(path)
        filer.summarise(directory, "pcap")
        dirs.append(directory)
    return dirs


def cpu_ms(step) -> tuple[float, object]:
    started = time.process_time()
    outcome = step()
    return 1000 * (time.process_time() - started), outcome


def main() -> None:
    hours = int(sys.argv[1]) if len(sys.argv) > 1 else 48
    per_hour = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    root = Path(tempfile.mkdtemp(prefix="par-catchup-"))
    data = root / "data"
    data.mkdir()
    dirs = tree(root, hours, per_hour)
    run = lambda: catchup.catch_up(root / "filed", data, "pcap")  # noqa: E731
    ms, _ = cpu_ms(run)
    print(f"{hours} hours of {per_hour} files, all current: first sweep {ms:.1f} ms CPU")
    ms, _ = cpu_ms(run)
    print(f"catch-up done: {ms * 1000:.0f} us CPU a pass")
    for directory in dirs:
        where = summary_path(directory, "pcap")
        data_v1 = bytearray(where.read_bytes())
        data_v1[8:12] = (1).to_bytes(4, "little")
        where.write_bytes(bytes(data_v1))
    catchup.restart(data)
    passes = 0
    while True:
        ms, outcome = cpu_ms(run)
        passes += 1
        per = ms / max(outcome.rewritten, 1)
        print(
            f"after the upgrade, pass {passes}: {outcome.rewritten} rewritten, {ms:.1f} ms CPU ({per:.2f} ms an hour)"
        )
        if outcome.done:
            break


if __name__ == "__main__":
    main()
