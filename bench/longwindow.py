"""Long windows (issue 28): a week of one-minute files of a small sensor, asked over HTTP, week vs hour.

Builds (once, under --root) 10,080 filed and indexed one-minute captures of a small sensor (a fixed
pool of hosts per day, a few packets a second), one host seen in one minute of the week and one host
seen in one minute of each day, and each hour's summary as the filer writes it. Then, against one
node under gunicorn (PAR_MAX_WINDOW 31 days), side by side in one run: each query over the week and
over the hour holding the match, with the summaries in place, and the same with them set aside (as
before summaries: every file's index opened). Then the summaries' size, the filer's pass CPU for one
new file against the index build alone, and an index's checksum cost on open.

    .venv/bin/python bench/longwindow.py [--root /tmp/par-longwindow] [--files 10080] [--runs 5]
        [--skip-without] [--queries-only]

A week already built under --root (by this script of any version) is reused, its summaries
rewritten where the code running the script cannot read them. Each week query and its hour's are
called in turn, so that both meet the same load on a shared machine. The summaries' size is also
measured on one hour of a busier sensor.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsite.settings")

import harness  # noqa: E402

import pcapgen  # noqa: E402
from engine.index import FlowIndex, build_index, forget_open_indexes  # noqa: E402
from engine.index import columns as index_columns  # noqa: E402
from engine.index import opening as index_read  # noqa: E402
from engine.index.summary import SUMMARY_SUFFIX, read_summary, summary_path  # noqa: E402
from node import store  # noqa: E402

NS = 1_000_000_000
WEEK_S = 7 * 24 * 3600
SEEN_ONCE = "10.250.1.1"  # one minute of the week
DAILY = "10.250.2.2"  # one minute of each day
NEVER = "10.250.3.3"
SERVER = "192.0.2.250"


def week_start(files: int) -> int:
    """The first file's epoch: an hour boundary, the whole week ending over a day ago."""
    return (int(time.time()) - 86400 - files * 60) // 3600 * 3600


def build(root: Path, files: int) -> tuple[int, int]:
    """The capture tree (kept between runs); (first epoch, the minute holding SEEN_ONCE)."""
    filer_dir, marker = root / "filed", root / "built"
    start = week_start(files)
    seen_minute = files * 5 // 7
    if marker.exists() and marker.read_text().split()[1:] == [str(files)]:
        # A week built earlier (by this script, this or another version) is reused as it is, its
        # summaries rewritten where they are not of the current version (as reindex does).
        start = int(marker.read_text().split()[0])
        rewritten = 0
        for hour in sorted(filer_dir.glob("*/*/*/*")):
            if read_summary(summary_path(hour, "pcap")) is None:
                store.refresh_summary(hour, "pcap", rebuild=True)
                rewritten += 1
        if rewritten:
            print(f"  {rewritten} hours' summaries rewritten in the current version", flush=True)
        return start, seen_minute
    if marker.exists():
        marker.unlink()
    subprocess.run(["rm", "-rf", str(filer_dir)], check=True)
    rng = random.Random(7)
    pools: dict[int, list] = {}
    began = time.monotonic()
    for n in range(files):
        epoch = start + 60 * n
        day = n // 1440
        if day not in pools:
            pools[day] = pcapgen.mixed_flows(120, seed=day)  # the small sensor's day of flows
        flows = rng.sample(pools[day], 4)
        records = list(pcapgen.mixed_traffic(epoch * NS, 60, flows, pps=0.2, seed=n))
        extra = []
        if n == seen_minute:
            extra += [
                (epoch * NS + k * NS, pcapgen.ether(pcapgen.tcp(SEEN_ONCE, 40000, SERVER, 443, b"x" * 100)))
                for k in range(5)
            ]
        if n % 1440 == 700:
            extra += [(epoch * NS + 5 * NS, pcapgen.ether(pcapgen.udp(DAILY, 5353, SERVER, 53, b"q" * 40)))]
        records = sorted(records + extra, key=lambda r: r[0])
        directory = store.hour_dir(filer_dir, epoch, True)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"pcap.{epoch}"
        pcapgen.write_pcap(path, records)
        build_index(path)
        if n % 60 == 59 or n == files - 1:
            store.refresh_summary(directory, "pcap")
        if n % 1000 == 999:
            print(f"  {n + 1} files, {time.monotonic() - began:.0f} s", flush=True)
    marker.write_text(f"{start} {files}")
    return start, seen_minute


def tree_bytes(filer_dir: Path) -> tuple[int, int, int]:
    captures = indexes = summaries = 0
    for dirpath, _, names in os.walk(filer_dir):
        for name in names:
            size = os.path.getsize(os.path.join(dirpath, name))
            if name.endswith(".idx"):
                indexes += size
            elif name.endswith(SUMMARY_SUFFIX):
                summaries += size
            else:
                captures += size
    return captures, indexes, summaries


def busier_share(root: Path) -> None:
    """The summary's share of the captures on a busier sensor: one hour of one-minute files, 100x the packets."""
    hour = root / "busier"
    subprocess.run(["rm", "-rf", str(hour)], check=True)
    hour.mkdir()
    rng, pool = random.Random(11), pcapgen.mixed_flows(2000, seed=11)
    epoch = 1_700_000_000 // 3600 * 3600
    for n in range(60):
        path = hour / f"pcap.{epoch + 60 * n}"
        flows = rng.sample(pool, 40)
        pcapgen.write_pcap(path, pcapgen.mixed_traffic((epoch + 60 * n) * NS, 60, flows, pps=20, seed=n))
        build_index(path)
    size = store.refresh_summary(hour, "pcap") or 0
    captures = sum(path.stat().st_size for path in hour.glob("pcap.*") if path.suffix != ".idx")
    print(
        f"busier sensor (60 one-minute files, 40 of 2,000 flows a minute, 20 packets/s): captures "
        f"{captures:,} bytes an hour, summary {size:,} ({size / captures:.3%})"
    )


def set_summaries_aside(filer_dir: Path, aside: bool) -> None:
    """Summaries renamed out of their names (as before this change), or back; hour dirs then settle."""
    for dirpath, _, names in os.walk(filer_dir):
        for name in names:
            here = Path(dirpath, name)
            if aside and name.endswith(SUMMARY_SUFFIX):
                here.rename(here.with_name(name + ".aside"))
            elif not aside and name.endswith(SUMMARY_SUFFIX + ".aside"):
                here.rename(here.with_name(name.removesuffix(".aside")))
    settled = time.time() - 3600
    for dirpath, _, _ in os.walk(filer_dir):
        os.utime(dirpath, (settled, settled))


def queries(url: str, start: int, seen: int, files: int, runs: int) -> dict[str, tuple[float, float]]:
    end = start + files * 60 - 1
    seen_epoch = start + seen * 60
    hour = seen_epoch // 3600 * 3600
    daily_hour = (start + 700 * 60) // 3600 * 3600

    def get(path, **params):
        def call():
            answer = requests.get(f"{url}{path}", params=params, timeout=600)
            assert answer.status_code in (200, 404), (answer.status_code, answer.text[:200])
            return answer

        return call

    def head(**params):
        return lambda: requests.head(f"{url}/data.pcap", params=params, timeout=600)

    week = {"start_time": str(start), "end_time": str(end)}
    its_hour = {"start_time": str(hour), "end_time": str(hour + 3599)}
    day_hour = {"start_time": str(daily_hour), "end_time": str(daily_hour + 3599)}
    checks = get("/data.pcap", src_addr=SEEN_ONCE, **week)()
    assert checks.status_code == 200 and len(checks.content) > 24 + 5 * 100, len(checks.content)
    daily = get("/flows", src_addr=DAILY, **week)().json()
    assert sum(row["packets"] for row in daily["flows"]) == -(-(files - 700) // 1440), daily
    pairs = {
        ("host seen once, week", "host seen once, its hour"): (
            get("/data.pcap", src_addr=SEEN_ONCE, **week),
            get("/data.pcap", src_addr=SEEN_ONCE, **its_hour),
        ),
        ("host never seen, week", "host never seen, an hour"): (
            get("/data.pcap", src_addr=NEVER, **week),
            get("/data.pcap", src_addr=NEVER, **its_hour),
        ),
        ("/flows daily host, week", "/flows daily host, one hour"): (
            get("/flows", src_addr=DAILY, **week),
            get("/flows", src_addr=DAILY, **day_hour),
        ),
        ("HEAD host seen once, week", "HEAD host seen once, its hour"): (
            head(src_addr=SEEN_ONCE, **week),
            head(src_addr=SEEN_ONCE, **its_hour),
        ),
    }
    rows = {}
    for (week_label, hour_label), (over_week, over_hour) in pairs.items():
        rows[week_label], rows[hour_label] = timed_pair(over_week, over_hour, runs)
    return rows


def timed_pair(first, second, runs: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """``timed`` of two calls made in turn, so that both meet the same load on a shared machine."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs + 1):
        for call, kept in ((first, times[0]), (second, times[1])):
            began = time.perf_counter()
            call()
            kept.append((time.perf_counter() - began) * 1000)
    return (times[0][0], statistics.median(times[0][1:])), (times[1][0], statistics.median(times[1][1:]))


def filer_cost(root: Path, start: int) -> None:
    """CPU of ``manage.py runfiler`` (a cron pass) filing one new one-minute file, vs its index build alone."""
    capture_dir, filer_dir = root / "pass-capture", root / "pass-filed"
    subprocess.run(["rm", "-rf", str(capture_dir), str(filer_dir)], check=True)
    capture_dir.mkdir()
    epoch = start
    hour = store.hour_dir(filer_dir, epoch, True)
    hour.mkdir(parents=True)
    flows = pcapgen.mixed_flows(120, seed=1)
    for n in range(59):  # the hour's other files, filed and summarised
        path = hour / f"pcap.{epoch + 60 * n}"
        pcapgen.write_pcap(path, pcapgen.mixed_traffic((epoch + 60 * n) * NS, 60, flows[:4], pps=0.2, seed=n))
        build_index(path)
    store.refresh_summary(hour, "pcap")
    new = capture_dir / f"pcap.{epoch + 59 * 60}"
    pcapgen.write_pcap(new, pcapgen.mixed_traffic((epoch + 59 * 60) * NS, 60, flows[:4], pps=0.2, seed=99))
    new_bytes = new.stat().st_size
    live = capture_dir / f"pcap.{epoch + 3600}"
    pcapgen.write_pcap(live, [])
    probe = root / "probe.pcap"
    probe.write_bytes(new.read_bytes())
    builds = []
    for _ in range(20):
        before = time.process_time()
        build_index(probe)
        builds.append(time.process_time() - before)
    build_cpu = statistics.median(builds) * 1000
    env = {
        **os.environ,
        "PAR_ROLE": "node",
        "PAR_DATA_DIR": str(root / "pass-data"),
        "PAR_CAPTURE_DIR": str(capture_dir),
        "PAR_FILER_DIR": str(filer_dir),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "manage.py", "runfiler"], cwd=harness.ROOT, env=env, check=True, capture_output=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    pass_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=harness.ROOT, env=env, check=True, capture_output=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    startup_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    # The summary's update alone: the hour's 59 files summarised, one more added.
    filed = store.stored_capture(hour, f"pcap.{epoch + 59 * 60}")  # compressed when filed, by default
    filed is not None or sys.exit("the pass did not file the new file")
    updates = []
    for _ in range(10):
        summary = store.summary_path(hour, "pcap")
        data = summary.read_bytes()
        index_read.forget_open_indexes()
        os.replace(filed, root / "held")
        store.refresh_summary(hour, "pcap", rebuild=True)
        os.replace(root / "held", filed)
        before = time.process_time()
        store.refresh_summary(hour, "pcap")
        updates.append(time.process_time() - before)
        summary.write_bytes(data)
    print(
        f"filer pass (manage.py runfiler, one new one-minute file, {new_bytes} bytes): "
        f"{pass_cpu:.0f} ms CPU; a bare manage.py check: {startup_cpu:.0f} ms CPU; "
        f"the index build alone: {build_cpu:.2f} ms CPU; the summary's update for it: "
        f"{statistics.median(updates) * 1000:.2f} ms CPU"
    )
    print(
        f"  pass / index build: {pass_cpu / build_cpu:.0f}x; pass less the process start / index build: "
        f"{max(0.0, pass_cpu - startup_cpu) / build_cpu:.1f}x"
    )


def checksum_cost(root: Path) -> None:
    """An index's open with its checksums checked, against the same with the checks skipped."""
    path = root / "pcap.1700000000"
    if not path.exists():
        pcapgen.write_pcap(path, pcapgen.mixed_traffic(1700000000 * NS, 60, 4000, pps=5000, seed=3))
        build_index(path)
    size = os.path.getsize(str(path) + ".idx")
    real = index_columns._CheckedColumns.__getitem__

    def unchecked(self, name):
        self._checked.add(name)
        return self._columns[name]

    results = {}
    for label, getter in (("checked", real), ("unchecked", unchecked)):
        index_columns._CheckedColumns.__getitem__ = getter
        opens, looks, whole = [], [], []
        for _ in range(30):
            forget_open_indexes()
            began = time.perf_counter()
            index = FlowIndex(str(path) + ".idx")
            opened = time.perf_counter()
            index.address_flows(
                b"\0" * 10 + b"\xff\xff" + bytes((10, 1, 2, 3)),
                b"\0" * 10 + b"\xff\xff" + bytes((10, 1, 2, 3)),
            )
            index.packet_offsets(index.port_flows(443)[:3])
            looked = time.perf_counter()
            index.check()
            whole.append(time.perf_counter() - looked)
            opens.append(opened - began)
            looks.append(looked - opened)
        results[label] = (
            statistics.median(opens) * 1000,
            statistics.median(looks) * 1000,
            statistics.median(whole) * 1000,
        )
    index_columns._CheckedColumns.__getitem__ = real
    (o1, l1, w1), (o0, l0, _) = results["checked"], results["unchecked"]
    print(
        f"index checksums ({size:,} byte index of {path.stat().st_size:,} bytes): open {o1:.3f} ms "
        f"(unchecked {o0:.3f}); open's first lookups {l1:.3f} ms (unchecked {l0:.3f}); every column "
        f"checked (reindex) {w1:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/par-longwindow"))
    parser.add_argument("--files", type=int, default=10_080)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--costs-only", action="store_true", help="the filer's and the checksums' costs only")
    parser.add_argument("--queries-only", action="store_true", help="no filer's nor checksums' costs")
    parser.add_argument(
        "--skip-without", action="store_true", help="not the queries with the summaries set aside (slow)"
    )
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    if args.costs_only:
        filer_cost(args.root, week_start(args.files))
        checksum_cost(args.root)
        return
    start, seen = build(args.root, args.files)
    store.bump_tree_stamp(args.root / "filed")  # as the filer leaves it after a pass
    set_summaries_aside(args.root / "filed", False)  # as a run stopped half-way may have left them
    captures, indexes, summaries = tree_bytes(args.root / "filed")
    print(
        f"{args.files} one-minute files: captures {captures:,} bytes, indexes {indexes:,}, "
        f"summaries {summaries:,} ({summaries / captures:.3%} of the captures); load {os.getloadavg()}"
    )
    (args.root / "capture").mkdir(exist_ok=True)
    env = {
        "PAR_DATA_DIR": str(args.root / "data"),
        "PAR_CAPTURE_DIR": str(args.root / "capture"),
        "PAR_FILER_DIR": str(args.root / "filed"),
        "PAR_MAX_WINDOW": str(31 * 86400),
        "PAR_WORKERS": "1",
    }
    (args.root / "data").mkdir(exist_ok=True)
    rows = {}
    busier_share(args.root)
    labels = (("without summaries", True), ("with summaries", False))
    for label, aside in labels[1:] if args.skip_without else labels:
        set_summaries_aside(args.root / "filed", aside)
        with harness.server("node", env, args.root / f"node-{label[:4]}.log") as url:
            rows[label] = queries(url, start, seen, args.files, args.runs)
    print(f"load after the queries {os.getloadavg()}")
    print(
        "query (week and hour called in turn) | without summaries: first, median ms | with summaries: first, median ms"
    )
    for name in rows["with summaries"]:
        (f0, m0), (f1, m1) = (
            rows.get("without summaries", {}).get(name, (0.0, 0.0)),
            rows["with summaries"][name],
        )
        print(f"{name} | {f0:.1f}, {m0:.1f} | {f1:.1f}, {m1:.1f}")
    w = rows["with summaries"]
    print(
        f"ratios with summaries (median): seen once week/hour {w['host seen once, week'][1] / w['host seen once, its hour'][1]:.2f}x; "
        f"never seen week/hour {w['host never seen, week'][1] / w['host never seen, an hour'][1]:.2f}x; "
        f"/flows week / one hour {w['/flows daily host, week'][1] / w['/flows daily host, one hour'][1]:.2f}x"
    )
    if not args.queries_only:
        filer_cost(args.root, start)
        checksum_cost(args.root)


if __name__ == "__main__":
    main()
