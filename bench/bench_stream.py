"""Benchmark: how fast the engine streams a large answer, bulk path against per-record path, in one run.

    .venv/bin/python bench/bench_stream.py                 # 256 MiB of each traffic shape
    .venv/bin/python bench/bench_stream.py --size-mb 64    # a quick check

Writes under bench/out/stream/ (git-ignored), indexes the files, then for each question reads the
whole answer in-process (``engine.query.plan.query_captures``, as the node serves it) with the bulk
path and with ``bulk=False`` (record by record), and prints MB/s of answer, CPU ms per MB, and
the same bytes read by ``cat`` (the page cache's ceiling for them). Every pair of answers is
compared byte for byte. The shapes:

    one flow:  one large TCP flow of full segments, 1% other packets (the load benchmark's capture)
    elephant:  the index benchmark's mixed link, an elephant flow carrying 20% of the packets
    network:   every packet of 10.0.0.0/8 on that mixed link (most of it, in many small runs)

and the last two again over the same files as if they had no index (the live file): a scan.
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pcapgen as g  # noqa: E402
from bench import ELEPHANT, FILE_SECONDS, T0, generate  # noqa: E402
from engine.index import build_index, index_is_current  # noqa: E402
from engine.query.plan import CaptureFile, query_captures  # noqa: E402
from engine.selection.selectors import FlowQuery, Selection  # noqa: E402

FLOW = g.Flow(6, "10.0.0.1", 1234, "10.0.0.2", 80)


def write_one_flow(path: Path, size: int) -> None:
    """One large flow of 1.4 kB segments, one other packet in a hundred, in time order."""
    big = FLOW.frame(True, b"x" * 1400)
    other = g.ether(g.udp("10.9.0.1", 53, "10.9.0.2", 5353, b"o" * 80))
    count = size // (16 + len(big))
    step = FILE_SECONDS * 10**9 // count

    def records():
        for i in range(count):
            yield T0 * 10**9 + i * step, other if i % 100 == 99 else big

    g.write_pcap(path, records())


def timed(files: list[Path], q: Selection, bulk: bool) -> tuple[float, float, int]:
    """(wall s, CPU s, bytes) of reading the whole answer."""
    wall, cpu = time.perf_counter(), time.process_time()
    size = sum(len(chunk) for chunk in query_captures(files, q, bulk=bulk, chunk_size=1 << 16))
    return time.perf_counter() - wall, time.process_time() - cpu, size


def same_answers(files: list[Path], q: Selection) -> bool:
    """Whether both paths give the same bytes (compared as they stream, not timed)."""
    ours = query_captures(files, q, chunk_size=1 << 20)
    theirs = query_captures(files, q, bulk=False, chunk_size=1 << 20)
    left = right = b""
    while True:
        if len(left) < 1 << 20:
            left += next(ours, b"")
        if len(right) < 1 << 20:
            right += next(theirs, b"")
        n = min(len(left), len(right))
        if left[:n] != right[:n]:
            return False
        if n == 0:
            return not left and not right
        left, right = left[n:], right[n:]


def cat_rate(files: list[Path]) -> float:
    """MB/s of ``cat`` over the files into /dev/null (after one warming read)."""
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
        seconds = time.perf_counter() - start
    total = sum(f.stat().st_size for f in files)
    return total / seconds / 1e6


def measure(label: str, files: list, q: Selection, repeat: int) -> None:
    rows = {}
    for bulk in (True, False):
        best = None
        for _ in range(repeat):
            wall, cpu, answer = timed(files, q, bulk)
            if best is None or wall < best[0]:
                best = (wall, cpu, answer)
        rows[bulk] = best
    paths = [getattr(f, "path", f) for f in files]
    size = rows[True][2] / 1e6
    same = rows[True][2] == rows[False][2] and same_answers(files, q)
    print(
        f"== {label}: {size:,.0f} MB answer from {sum(p.stat().st_size for p in paths) / 1e6:,.0f} MB of files"
    )
    for bulk, name in ((True, "bulk"), (False, "per record")):
        wall, cpu, _ = rows[bulk]
        print(f"  {name:<10}  {size / wall:8,.0f} MB/s  {cpu * 1000 / size:6.2f} ms CPU/MB")
    print(f"  cat         {cat_rate(paths):8,.0f} MB/s (the files' bytes)")
    print(f"  same bytes: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=256, help="MiB of each traffic shape")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each answer (the fastest kept)")
    args = parser.parse_args()
    out = ROOT / "bench" / "out" / "stream"
    out.mkdir(parents=True, exist_ok=True)
    one = out / "one" / f"pcap.{T0}"
    one.parent.mkdir(exist_ok=True)
    if not one.exists() or one.stat().st_size < args.size_mb * 2**20 * 0.9:
        write_one_flow(one, args.size_mb * 2**20)
    files = 4 if args.size_mb >= 256 else 1
    mixed = generate(out / f"mixed{args.size_mb}", files, args.size_mb * 2**20 // files, 3000, 0.2)
    for path in [one, *mixed]:
        if not index_is_current(path):
            build_index(path)
    everything = (0, 2**62)
    a, b = ipaddress.ip_address(FLOW.a), ipaddress.ip_address(FLOW.b)
    measure("one flow", [one], FlowQuery(a, FLOW.a_port, b, FLOW.b_port, *everything), args.repeat)
    e = ELEPHANT
    q = FlowQuery(ipaddress.ip_address(e.a), e.a_port, ipaddress.ip_address(e.b), e.b_port, *everything)
    measure("elephant", mixed, q, args.repeat)
    network = Selection(*everything, src=ipaddress.ip_network("10.0.0.0/8"))
    measure("network", mixed, network, args.repeat)
    # The same questions of files without an index (as the live file is): a scan of every record.
    unindexed = [CaptureFile(path) for path in mixed]
    measure("elephant, no index (scan)", unindexed, q, args.repeat)
    measure("network, no index (scan)", unindexed, network, args.repeat)


if __name__ == "__main__":
    main()
