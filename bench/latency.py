"""Latency of small calls on a quiet machine: node direct vs through the collector, p50/p99.

    .venv/bin/python bench/latency.py                    # 300 calls of each kind, 10 one-minute files
    .venv/bin/python bench/latency.py --calls 100        # quicker
    .venv/bin/python bench/latency.py --small-packets 10 # a smaller answer (10-400 is the goal's range)
    .venv/bin/python bench/latency.py --in-process --roles node --reuse --profile "small pcap"  # where time goes

Files and indexes ``--files`` one-minute captures of background traffic (``pcapgen.mixed_traffic``)
with one small UDP flow spread over all of them, starts a node and a collector under the shipped
gunicorn.conf.py on loopback, then times sequential calls on one keep-alive connection each:

    /ping, GET /data.pcap of the small flow, HEAD of the same, /flows of one host (the flow's client)

first at the node, then the same through the collector (admin key, node_id=1). Each call is timed to
its last body byte. Prints p50, p99 and the slowest per call, how many took over 30 ms (stalls),
and the machine's load average before and after: on a shared machine the figures mean little
unless the load is low.

``--in-process --roles node`` calls the node's Django app in this process instead (Django's test
client, the same middleware and views, no socket and no gunicorn) and prints the CPU time per call
too, which a busy machine disturbs less than wall time; ``--in-process --roles collector`` does
the same for the collector, with the node under gunicorn. ``--profile NAME`` adds cProfile's top
functions for that call. ``--reuse`` keeps the capture of the previous run.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import collector_env, load_average, manage, server, set_up_collector  # noqa: E402

import pcapgen as g  # noqa: E402

T0 = 1_700_000_000
KEY = "0f6c7e4e-7a53-4b6e-9d0a-5b2e8c1d3f47"
CLIENT, SERVER = ("10.77.0.3", 40053), ("10.77.0.4", 53)
SLOW_S = 0.030  # a call this slow is a stall (a full garbage collection took ~60 ms), counted apart
SMALL = {"src_addr": CLIENT[0], "src_port": str(CLIENT[1]), "dst_addr": SERVER[0], "dst_port": str(SERVER[1])}


def write_captures(directory: Path, files: int, small_packets: int, pps: int) -> None:
    """``files`` one-minute captures (plus an empty live one) with the small flow spread over them."""
    directory.mkdir(parents=True)
    per_file = [small_packets // files + (1 if i < small_packets % files else 0) for i in range(files)]
    for i in range(files):
        start = (T0 + 60 * i) * 10**9
        noise = list(g.mixed_traffic(start, 60, 2000, pps=pps, seed=i))
        step = 60 * 10**9 // (per_file[i] + 1)
        small = [
            (start + (k + 1) * step + 3, g.ether(g.udp(*CLIENT, *SERVER, b"q%d" % k)))
            for k in range(per_file[i])
        ]
        g.write_pcap(directory / f"pcap.{T0 + 60 * i}", sorted(noise + small))
    g.write_pcap(directory / f"pcap.{T0 + 60 * files}", [])  # the live file: every one before it is filed


def timed(url: str, method: str, target, headers: dict[str, str], calls: int) -> list[float]:
    """Seconds of ``calls`` sequential requests on one keep-alive connection, each to its last byte.

    ``target(n)`` is the path of the n-th call: the queries differ from call to call (by a few ns
    of the window's end), so no answer can be kept from one call for the next.
    """
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    times = []
    try:
        for n in range(calls + 5):  # the first few warm the worker's caches and the connection
            started = time.perf_counter()
            path = target(n)
            connection.request(method, path, headers=headers)
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"{method} {path}: {answer.status} {answer.reason}")
            if n >= 5:
                times.append(time.perf_counter() - started)
    finally:
        connection.close()
    return times


def _target(path: str, params: dict[str, str], extra: dict[str, str]):
    """The n-th call's path: /ping bare (the collector's with its key), a query with its end moved by n ns."""
    if path == "/ping":
        return lambda n: path
    end = params["end_time"]
    return lambda n: f"{path}?{urlencode({**params, **extra, 'end_time': f'{end}.{n:09d}'})}"


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    slow = sum(1 for t in ordered if t > SLOW_S)
    return (
        f"p50 {statistics.median(ordered) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
        f"max {ordered[-1] * 1000:6.1f} ms  (n={len(ordered)}, {slow} over {SLOW_S * 1000:.0f} ms)"
    )


def in_process(
    role: str, env: dict[str, str], calls: dict, extra: dict, headers: dict, count: int, profile: str | None
) -> None:
    """Each call through ``role``'s Django app in this process: wall and CPU ms per call (mean)."""
    import cProfile
    import os
    import pstats

    # Each answer's log line is kept out of the output (WARNING): its cost is not measured here.
    settings = {"PAR_ROLE": role, "DJANGO_SETTINGS_MODULE": "parsite.settings", "PAR_LOG_LEVEL": "WARNING"}
    os.environ.update({**env, **settings})
    import django
    from django.test import Client

    django.setup()
    meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    client = Client(HTTP_HOST="127.0.0.1", **meta)

    def call(method: str, path: str) -> None:
        answer = client.generic(method, path)
        if answer.status_code != 200:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.content[:200]!r}")
        if answer.streaming:
            b"".join(answer.streaming_content)
        answer.close()

    for name, (method, path, params) in calls.items():
        target = _target(path, params, extra)

        def calls_from(first: int, method: str = method, target=target) -> None:
            for n in range(first, first + count):
                call(method, target(n))

        calls_from(0)
        wall, cpu = time.perf_counter(), time.process_time()
        calls_from(count)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"in-process {role} {name:11} wall {wall / count * 1000:6.2f} ms  cpu {cpu / count * 1000:6.2f} ms"
        )
        if name == profile:
            from django.db import connection
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as queries:
                call(method, target(3 * count))
            print(f"{len(queries.captured_queries)} SQL statements:")
            for query in queries.captured_queries:
                print(f"  {query['time']} s  {query['sql'][:300]}")
            profiler = cProfile.Profile()
            profiler.runcall(calls_from, 2 * count)
            pstats.Stats(profiler).sort_stats(os.environ.get("PAR_BENCH_SORT", "cumulative")).print_stats(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls of each kind")
    parser.add_argument("--files", type=int, default=10, help="one-minute capture files")
    parser.add_argument("--small-packets", type=int, default=100, help="packets of the small flow in all")
    parser.add_argument("--pps", type=int, default=200, help="background packets per second")
    parser.add_argument("--roles", default="node,collector")
    parser.add_argument("--in-process", action="store_true", help="the app of --roles (one) in this process")
    parser.add_argument("--profile", metavar="NAME", help="with --in-process: profile this call")
    parser.add_argument("--reuse", action="store_true", help="keep the previous run's capture")
    parser.add_argument(
        "--compress",
        choices=("zstd", "none"),
        default="zstd",
        help="how the filer stores the captures (PAR_COMPRESS; zstd: the product's default)",
    )
    args = parser.parse_args()

    out = ROOT / "bench" / "out" / "latency"
    node_env = {
        "PAR_DATA_DIR": str(out / "node"),
        "PAR_CAPTURE_DIR": str(out / "capture"),
        "PAR_FILER_DIR": str(out / "filed"),
        "PAR_COMPRESS": args.compress,
    }
    if not (args.reuse and (out / "filed").is_dir()):
        shutil.rmtree(out, ignore_errors=True)
        write_captures(out / "capture", args.files, args.small_packets, args.pps)
        (out / "filed").mkdir()
        manage(node_env, "runfiler", role="node")
    filed = [p for p in (out / "filed").rglob("pcap.*") if p.suffix not in (".idx", ".summary")]
    size = sum(p.stat().st_size for p in filed)
    window = {"start_time": str(T0), "end_time": str(T0 + 60 * len(filed) - 1)}
    calls = {
        "/ping": ("GET", "/ping", {}),
        "small pcap": ("GET", "/data.pcap", {**SMALL, **window}),
        "small HEAD": ("HEAD", "/data.pcap", {**SMALL, **window}),
        "flows host": ("GET", "/flows", {"src_addr": CLIENT[0], **window}),
    }
    print(
        f"{len(filed)} indexed one-minute files ({args.compress}), {size / 1e6:.1f} MB stored; small flow {args.small_packets} "
        f"packets; {args.calls} sequential calls each on one keep-alive connection"
    )
    print(f"before: {load_average()}")
    with ExitStack() as stack:
        if args.in_process and args.roles == "node":
            in_process("node", node_env, calls, {}, {}, args.calls, args.profile)
            print(f"after:  {load_average()}")
            return
        node = stack.enter_context(server("node", node_env, out / "node.log"))
        urls = {"node": (node, {}, {})}
        if "collector" in args.roles:
            env = collector_env(out / "collector")
            set_up_collector(env, [node], KEY)
            extra, headers = {"node_id": "1"}, {"X-Api-Key": KEY}
            if args.in_process:  # the collector here, the node under gunicorn
                in_process("collector", env, calls, extra, headers, args.calls, args.profile)
                print(f"after:  {load_average()}")
                return
            collector = stack.enter_context(server("collector", env, out / "collector.log"))
            urls["collector"] = (collector, extra, headers)
        for role in args.roles.split(","):
            url, extra, headers = urls[role]
            for name, (method, path, params) in calls.items():
                print(
                    f"{role:9} {name:11} {summary(timed(url, method, _target(path, params, extra), headers, args.calls))}"
                )
    print(f"after:  {load_average()}")


if __name__ == "__main__":
    main()
