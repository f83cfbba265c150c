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

Python's compiled modules are kept in a directory of this run's (``PYTHONPYCACHEPREFIX``), so the
trees measured are not written to: the figures are those of an install whose modules are compiled
ahead (``make venv``); the start-up without them (a read-only tree nobody compiled, every module
compiled again by every process) is measured too.

Then the pass that files one new one-minute capture of a small sensor into an hour of 50 filed
ones: by a new process (``manage.py runfiler`` from cron, its defaults) and by a resident one
(``runfiler --loop``: a filing pass and a tier pass, bench/startup_pass.py), against the index
build of that capture alone and the hour summary's update for it, in the same resident process.
"""

from __future__ import annotations

import argparse
import json
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

import startup_pass  # noqa: E402

import pcapgen as g  # noqa: E402

T0 = 1_700_000_000
# Run in the node process after Django's set-up: which modules a node loads.
PROBE = (
    "import sys, django; django.setup(); from django.core.management import call_command; "
    "import node.management.commands.runfiler; "
    "mods = sorted(sys.modules); "
    "print(len(mods), len([m for m in mods if m == 'collector' or m.startswith('collector.')]), "
    "len([m for m in mods if m.startswith(('drf_spectacular', 'django.contrib.postgres', 'axes')) "
    "and sys.modules[m] is not None]))"  # a None entry is an import refused (parsite/settings.py)
)
PASS_SCRIPT = Path(__file__).resolve().with_name("startup_pass.py")


def cpu_of(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """CPU seconds (user + system) that ``cmd`` and its children spent."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def node_env(work: Path, compiled: bool = True, write: bool = False) -> dict[str, str]:
    """A node's environment; ``compiled``: the tree's modules compiled ahead (else each process
    compiles them again, as in a read-only tree nobody compiled; the libraries' are compiled)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / ("pycache" if compiled else "pycache-libraries"))
    if not compiled and not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {
        **env,
        "PAR_LOG_LEVEL": "WARNING",
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


def pass_env(work: Path, root: Path) -> dict[str, str]:
    return {
        **node_env(work),
        "PAR_DATA_DIR": str(root / "data"),
        "PAR_CAPTURE_DIR": str(root / "capture"),
        "PAR_FILER_DIR": str(root / "filed"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tree", action="append", type=Path, default=[], help="another checkout")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    trees = [ROOT, *(t.resolve() for t in args.tree)]
    python = sys.executable
    runfiler = [python, "manage.py", "runfiler", "--jobs", "1"]
    figures: dict[tuple[Path, str], list[float]] = {}
    resident: dict[Path, dict[str, float]] = {}
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="par-startup-") as tmp:
        work = Path(tmp)
        for tree in trees:  # warm: the compiled index code and .pyc files are cached before timing
            for compiled in (True, False):
                fresh_dirs(work, with_file=True)
                cpu_of(runfiler, tree, node_env(work, compiled, write=True))
            # The libraries' compiled modules kept (.venv), the tree's removed (the prefix mirrors paths).
            for compiled_dir in (work / "pycache-libraries" / tree.relative_to(tree.anchor)).iterdir():
                if compiled_dir.name != ".venv":
                    shutil.rmtree(compiled_dir)
        passes = {tree: work / f"pass-{n}" for n, tree in enumerate(trees)}
        for tree, root in passes.items():  # an hour of 50 filed captures, for the cron passes
            subprocess.run(
                [python, str(PASS_SCRIPT), "prepare", str(root)],
                cwd=tree,
                env=pass_env(work, root),
                check=True,
                capture_output=True,
            )
        minutes = range(startup_pass.FILED_BEFORE, startup_pass.LIVE)
        for run in range(args.runs):
            for tree in trees:
                for kind, with_file, compiled in (
                    ("start-up (nothing to file)", False, True),
                    ("start-up, tree not compiled", False, False),
                    ("one small file", True, True),
                ):
                    fresh_dirs(work, with_file)
                    cpu = cpu_of(runfiler, tree, node_env(work, compiled))
                    figures.setdefault((tree, kind), []).append(cpu)
                figures.setdefault((tree, "manage.py check"), []).append(
                    cpu_of([python, "manage.py", "check"], tree, node_env(work))
                )
                if run < len(minutes):  # cron: a new process, runfiler's defaults
                    startup_pass.next_capture(passes[tree], minutes[run])
                    cpu = cpu_of([python, "manage.py", "runfiler"], tree, pass_env(work, passes[tree]))
                    figures.setdefault((tree, "cron pass, one new file"), []).append(cpu)
        for tree in trees:
            root = work / f"resident-{trees.index(tree)}"
            done = subprocess.run(
                [python, str(PASS_SCRIPT), "resident", str(root), str(args.runs)],
                cwd=tree,
                env=pass_env(work, root),
                check=True,
                capture_output=True,
                text=True,
            )
            resident[tree] = json.loads(done.stdout.splitlines()[-1])
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
            ms = resident[tree]
            print(
                f"  resident pass (--loop), one new file: {ms['pass']:.1f} ms CPU (its first: "
                f"{ms['first_pass']:.0f} ms); the index build alone {ms['build']:.2f} ms, "
                f"the hour summary's update {ms['summary']:.2f} ms; pass / build {ms['pass'] / ms['build']:.1f}x"
            )
            cron = statistics.median(figures[(tree, "cron pass, one new file")]) * 1000
            print(f"  cron pass / build: {cron / ms['build']:.0f}x")
            print(
                f"  modules loaded by a node's runfiler: {modules}, of the collector: {collector}, "
                f"of drf_spectacular/postgres/axes: {collector_deps}"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
