"""Benchmark: one flow asked of 1, 4 and 8 local nodes through a collector, merged by time.

    .venv/bin/python bench/multinode.py                  # 1, 4, 8 nodes; 16 MB of the large flow per node
    .venv/bin/python bench/multinode.py --large-mb 4     # a quick check

Files and indexes each node's capture (runfiler), starts the nodes and a collector under gunicorn on
loopback (under bench/out/multinode/, git-ignored),
each node with its own capture of the same two flows (packet times shifted a little per node, so the
merge interleaves them), then measures through the collector:

    latency:    a small flow (40 packets) asked of every node, median and p90 of --repeat requests
    throughput: the large flow asked of every node, merged: MB/s of the merged answer

and, for reference, the same large flow from one node streamed through (no merge) and straight from
the node. Goals (issue 14): 8 nodes within 2x the latency of one; the merged rate at least half the
single-node stream rate.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import collector_env, manage, server, set_up_collector  # noqa: E402

import pcapgen as g  # noqa: E402

T0 = 1_700_000_000
KEY = "3f2c1b0a-9e8d-4c7b-a6f5-e4d3c2b1a090"
SMALL = {"src_addr": "10.0.0.1", "src_port": "40000", "dst_addr": "10.0.0.2", "dst_port": "53"}
LARGE = {"src_addr": "10.0.0.1", "src_port": "50000", "dst_addr": "10.0.0.2", "dst_port": "443"}
WINDOW = {"start_time": str(T0), "end_time": str(T0 + 3000)}


def write_capture(directory: Path, node: int, large_mb: float) -> None:
    """The node's capture: the small flow, the large flow (full-size segments) and some other traffic."""
    directory.mkdir(parents=True)
    shift = node * 1_000  # ns: the nodes' copies interleave in the merge
    small = [
        (
            T0 * 10**9 + 10**9 + i * 20_000_000 + shift,
            g.ether(g.udp("10.0.0.1", 40000, "10.0.0.2", 53, b"q%d" % i)),
        )
        for i in range(40)
    ]
    segment = g.ether(g.tcp("10.0.0.1", 50000, "10.0.0.2", 443, b"x" * 1400))
    count = int(large_mb * 2**20 / (16 + len(segment)))
    large = ((T0 * 10**9 + 2 * 10**9 + i * 20_000 + shift, segment) for i in range(count))
    other = g.ether(g.tcp("10.0.0.3", 1234, "10.0.0.4", 80, b"y" * 200))
    noise = [(T0 * 10**9 + 10**9 + i * 1_000_000 + shift + 7, other) for i in range(2000)]
    g.write_pcap(directory / f"pcap.{T0}", sorted(small + noise) + list(large))
    g.write_pcap(directory / f"pcap.{T0 + 3600}", [])  # the live file: the one before it gets filed


def timed_get(url: str, params: dict) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    with requests.get(url, params=params, stream=True, timeout=300) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_content(1 << 20):
            size += len(chunk)
    return time.perf_counter() - started, size


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="1,4,8", help="node counts to measure")
    parser.add_argument("--large-mb", type=float, default=16, help="MB of the large flow on each node")
    parser.add_argument("--repeat", type=int, default=30, help="small-flow requests per node count")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    out = ROOT / "bench" / "out" / "multinode"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with ExitStack() as stack:
        nodes = []
        for n in range(1, max(counts) + 1):
            base = out / f"node{n}"
            write_capture(base / "capture", n, args.large_mb)
            (base / "filed").mkdir()
            env = {
                "PAR_DATA_DIR": str(base),
                "PAR_CAPTURE_DIR": str(base / "capture"),
                "PAR_FILER_DIR": str(base / "filed"),
            }
            manage(env, "runfiler", role="node")  # filed and indexed, as an hour-old capture is
            nodes.append(stack.enter_context(server("node", env, base / "gunicorn.log")))
        env = collector_env(out / "collector")
        set_up_collector(env, nodes, KEY)
        collector = stack.enter_context(server("collector", env, out / "collector" / "gunicorn.log"))
        data = f"{collector}/data.pcap"

        # the best of three: the first answer of a process also warms its caches
        direct, size = min(timed_get(f"{nodes[0]}/data.pcap", {**LARGE, **WINDOW}) for _ in range(3))
        through, _ = min(
            timed_get(data, {**LARGE, **WINDOW, "node_id": "1", "api_key": KEY}) for _ in range(3)
        )
        print(
            f"large flow, {size / 2**20:.1f} MB from one node: direct {size / direct / 2**20:.0f} MB/s, "
            f"through the collector {size / through / 2**20:.0f} MB/s"
        )
        single_rate = size / through
        print(
            f"{'nodes':>5}  {'small p50':>10}  {'small p90':>10}  {'merged MB':>9}  {'merged MB/s':>11}  {'vs 1 node':>9}"
        )
        base_p50 = None
        for count in counts:
            ids = ",".join(str(i) for i in range(1, count + 1))
            params = {**WINDOW, "node_id": ids, "api_key": KEY}
            timed_get(data, {**SMALL, **params})  # warm the connections
            times = [timed_get(data, {**SMALL, **params})[0] for _ in range(args.repeat)]
            p50, p90 = statistics.median(times), percentile(times, 0.9)
            base_p50 = base_p50 or p50
            seconds, merged = min(timed_get(data, {**LARGE, **params}) for _ in range(3))
            rate = merged / seconds
            print(
                f"{count:>5}  {p50 * 1000:>8.1f}ms  {p90 * 1000:>8.1f}ms  {merged / 2**20:>9.1f}  "
                f"{rate / 2**20:>11.0f}  {rate / single_rate:>8.2f}x   (latency {p50 / base_p50:.2f}x one node)"
            )


if __name__ == "__main__":
    main()
