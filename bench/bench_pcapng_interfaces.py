"""The cost of reading a live pcapng's interfaces whole before answering (issue 26, point 3).

A pcapng file without an index has its block heads walked once (``PcapngCapture.learn_interfaces``)
so an interface declared after the first packet keeps its precision and link type. This measures
that walk against the query that scans the same file, for files of 10k to 300k packets.

    .venv/bin/python bench/bench_pcapng_interfaces.py [--packets 10000 100000 300000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pcapgen as g  # noqa: E402
from engine.formats import open_capture  # noqa: E402
from engine.query.plan import query_captures  # noqa: E402
from engine.selection.selectors import Selection  # noqa: E402

NS = 1_000_000_000
T0 = 1_700_000_000


def write(path: Path, packets: int) -> None:
    frames = [
        g.ether(g.udp(f"10.0.0.{i % 200 + 1}", 1000 + i % 50, "10.1.0.1", 53, b"x" * 200)) for i in range(64)
    ]
    g.write_pcapng(
        path, [g.Interface(tsresol=9)], [(0, T0 * NS + i * 1000, frames[i % 64]) for i in range(packets)]
    )


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    selection = Selection(start_ns=T0 * NS, end_ns=(T0 + 3600) * NS)
    print(f"{'packets':>8} {'MB':>6} {'walk ms':>8} {'query ms':>9} {'share':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for packets in args.packets:
            path = Path(tmp) / f"pcap.{T0}"
            write(path, packets)

            def walk(path: Path = path) -> None:
                with open_capture(path) as capture:
                    capture.learn_interfaces()  # type: ignore[attr-defined]

            def query(path: Path = path) -> None:
                for _ in query_captures([path], selection):
                    pass

            w, q = best(walk, args.repeat), best(query, args.repeat)
            mb = path.stat().st_size / 1e6
            print(f"{packets:>8} {mb:>6.1f} {w * 1000:>8.1f} {q * 1000:>9.1f} {w / q:>6.1%}")


if __name__ == "__main__":
    main()
