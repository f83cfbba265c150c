"""CPU a node's ``manage.py runfiler`` spends before its first file, and to file one small capture.

    .venv/bin/python bench/startup.py                       # this tree, 7 runs of each
    .venv/bin/python bench/startup.py --tree /tmp/before    # and another checkout, run by turns

Every cron pass of the filer pays its process's start-up before it looks at a file, so that cost is
measured on its own: a pass over a capture directory holding only the live file (nothing to file),
in CPU seconds (user + system, of the process and its children, from ``getrusage``). Then the same
with one small finished capture to index and file (``--jobs 1``: in the filer's own process).
Also counted: the modules the node process imports, and whether any of them is the collector's.
Each figure is the median of ``--runs``; with ``--tree`` the trees run by turns, so a busy machine
disturbs both alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pcapgen as g  # noqa: E402

T0 = 1_700_000_000
# Run in the node process after Django's set-up: which modules a node loads.
PROBE = (
    "import sys, django; django.setup(); from django.core.management import call_command; "
    "import node.management.commands.runfiler; "
    "mods = sorted(sys.modules); "
    "print(len(mods), len([m for m in mods if m == 'collector' or m.startswith('collector.')]), "
    "len([m for m in mods if m.startswith(('drf_spectacular', 'django.contrib.postgres', 'axes'))]))"
)


def cpu_of(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """CPU seconds (user + system) that ``cmd`` and its children spent."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def node_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PAR_ROLE": "node",
        "DJANGO_SETTINGS_MODULE": "parsite.settings",
        "PAR_DATA_DIR": str(work / "data"),
        "PAR_CAPTURE_DIR": str(work / "capture"),
        "PAR_FILER_DIR": str(work / "filed"),
    }


def fresh_dirs(work: Path, with_file: bool) -> None:
    for name in ("capture", "filed"):
        shutil.rmtree(work / name, ignore_errors=True)
        (work / name).mkdir(parents=True)
    (work / "data").mkdir(exist_ok=True)
    if with_file:
        packets = list(g.mixed_traffic(T0 * 10**9, 60, 200, pps=50, seed=1))
        g.write_pcap(work / "capture" / f"pcap.{T0}", packets)
    g.write_pcap(work / "capture" / f"pcap.{T0 + 60}", [])  # the live file, never filed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tree", action="append", type=Path, default=[], help="another checkout")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    trees = [ROOT, *(t.resolve() for t in args.tree)]
    python = sys.executable
    figures: dict[tuple[Path, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="par-startup-") as tmp:
        work = Path(tmp)
        for tree in trees:  # warm: the compiled index code and .pyc files are cached before timing
            fresh_dirs(work, with_file=True)
            cpu_of([python, "manage.py", "runfiler", "--jobs", "1"], tree, node_env(work))
        for _ in range(args.runs):
            for tree in trees:
                for kind, with_file in (("start-up (nothing to file)", False), ("one small file", True)):
                    fresh_dirs(work, with_file)
                    cmd = [python, "manage.py", "runfiler", "--jobs", "1"]
                    figures.setdefault((tree, kind), []).append(cpu_of(cmd, tree, node_env(work)))
                figures.setdefault((tree, "manage.py check"), []).append(
                    cpu_of([python, "manage.py", "check"], tree, node_env(work))
                )
        for tree in trees:
            probe = subprocess.run(
                [python, "-c", PROBE], cwd=tree, env=node_env(work), capture_output=True, text=True
            )
            modules, collector, collector_deps = (probe.stdout.split() + ["?"] * 3)[:3]
            print(f"{tree}")
            for (t, kind), values in figures.items():
                if t == tree:
                    print(
                        f"  {kind:28} CPU median {statistics.median(values):.3f} s  "
                        f"(min {min(values):.3f}, max {max(values):.3f}, {len(values)} runs)"
                    )
            print(
                f"  modules loaded by a node's runfiler: {modules}, of the collector: {collector}, "
                f"of drf_spectacular/postgres/axes: {collector_deps}"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
