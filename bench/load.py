"""Load benchmark: small calls while large downloads run, half-sent heads, stream rate vs ``cat``.

    .venv/bin/python bench/load.py              # about a minute: node and collector, loopback only
    .venv/bin/python bench/load.py --seconds 3  # shorter phases

Starts a node and a collector under gunicorn with the shipped gunicorn.conf.py and the
seed-compatible defaults (2 workers; PAR_KEY_STREAMS and PAR_KEY_RATE raised so one key may run
the 20 downloads), on a capture written under bench/out/load/, then measures side by side:

    /ping and a small /data.pcap, node direct and through the collector: idle, then while 20
    large downloads run, then while 40 sockets each hold half a request head;
    one large download's rate (curl, best of three) from the node and through the collector, with the
    servers' CPU per MB, vs ``cat`` of the same bytes.

Everything is bounded: each phase runs for --seconds, downloads stop when it ends.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import collector_env, load_average, manage, server, set_up_collector  # noqa: E402

import pcapgen as g  # noqa: E402

T0 = 1_700_000_000
BIG = {"src_addr": "10.0.0.1", "src_port": "1234", "dst_addr": "10.0.0.2", "dst_port": "80"}
SMALL = {"src_addr": "10.0.0.3", "src_port": "53", "dst_addr": "10.0.0.4", "dst_port": "5353"}
WINDOW = {"start_time": str(T0), "end_time": str(T0 + 59)}
KEY = "54b22f56-9a84-4893-bc70-332e3b5ded66"


def write_capture(path: Path, big_packets: int) -> int:
    """One capture file: a large flow, and a small one (100 packets) spread through it."""
    big = g.ether(g.tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"x" * 1400))
    small = g.ether(g.udp("10.0.0.3", 53, "10.0.0.4", 5353, b"q" * 80))
    step = 50 * 10**9 // big_packets

    def records():
        for i in range(big_packets):
            yield T0 * 10**9 + i * step, big
            if i % (big_packets // 100) == 0:
                yield T0 * 10**9 + i * step + 1, small

    g.write_pcap(path, records())
    return path.stat().st_size


def timed_calls(url: str, params: dict | None, seconds: float, limit: int = 400) -> list[float]:
    """Latencies (s) of sequential GETs for ``seconds`` (at most ``limit``); a failure counts as 5 s."""
    times: list[float] = []
    stop = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < stop and len(times) < limit:
            started = time.monotonic()
            try:
                answer = session.get(url, params=params, timeout=5)
                _ = answer.content  # the whole body: a small answer timed to its end
                ok = answer.status_code == 200
            except requests.RequestException:
                ok = False
            times.append(time.monotonic() - started if ok else 5.0)
    return times


def summary(times: list[float]) -> str:
    if not times:
        return "no answer"
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  (n={len(ordered)})"


class Downloads:
    """``count`` downloads of the large flow, over and over until stopped; bytes of the finished ones counted.

    Each is a ``curl`` process (C, a process of its own), so the clients take little CPU and none
    of the GIL of this process, whose thread times the small calls.
    """

    def __init__(self, url: str, params: dict, count: int, rate: str = "", seconds: float = 60) -> None:
        if shutil.which("curl") is None:
            raise SystemExit("the load benchmark needs curl (apt-get install curl)")
        full = requests.Request("GET", url, params=params).prepare().url
        # each download ends by --max-time at the latest, and says how many bytes it got
        limit = f"--limit-rate {rate} " if rate else ""
        curl = f"curl -s -o /dev/null --max-time {seconds:.0f} {limit}-w '%{{size_download}}\\n' '{full}'"
        loop = f"while :; do {curl} || sleep 0.1; done"
        self.count, self.loop = count, loop
        self.procs: list[subprocess.Popen] = []
        self.bytes = 0
        self.started = 0.0

    def __enter__(self) -> Downloads:
        for _ in range(self.count):
            self.procs.append(
                subprocess.Popen(
                    ["sh", "-c", self.loop], stdout=subprocess.PIPE, text=True, start_new_session=True
                )
            )
        time.sleep(1.0)  # let every download get under way
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            out, _ = proc.communicate(timeout=30)
            self.bytes += sum(int(line) for line in out.split() if line.isdigit())


@contextmanager
def half_heads(url: str, count: int):
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(sock)
        time.sleep(0.5)
        yield
    finally:
        for sock in sockets:
            sock.close()


def stream_rate(url: str, params: dict) -> tuple[float, int]:
    """(MB/s, bytes) of one download by curl, the best of three."""
    full = requests.Request("GET", url, params=params).prepare().url
    best = (0.0, 0)
    for _ in range(3):
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", full],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        size, seconds = done.stdout.split()
        best = max(best, (int(size) / float(seconds) / 1e6, int(size)))
    return best


def server_cpu(url: str) -> float:
    """CPU seconds the gunicorn processes serving ``url`` (master and workers) have used so far."""
    wanted = b"PAR_BIND=" + url.removeprefix("http://").encode()
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if wanted not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def cat_rate(path: Path) -> float:
    """MB/s of ``cat`` of the file into /dev/null, the better of two (the first warms the page cache)."""
    best = 0.0
    for _ in range(2):
        started = time.monotonic()
        with open(os.devnull, "wb") as sink:
            subprocess.run(["cat", str(path)], stdout=sink, check=True)
        best = max(best, path.stat().st_size / (time.monotonic() - started) / 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--big-packets", type=int, default=60_000, help="packets of the large flow (~1.5 kB)")
    parser.add_argument("--downloads", type=int, default=20)
    parser.add_argument("--half-heads", type=int, default=40)
    parser.add_argument(
        "--download-rate",
        default="",
        help="each download's rate, as curl's --limit-rate takes it (e.g. 10M: clients behind a network); "
        "default: as fast as loopback goes",
    )
    parser.add_argument(
        "--compress",
        choices=("zstd", "none"),
        default=os.environ.get("PAR_COMPRESS", "zstd"),
        help="how the filer stores the capture (PAR_COMPRESS; zstd: the product's default)",
    )
    args = parser.parse_args()

    out = ROOT / "bench" / "out" / "load"
    shutil.rmtree(out, ignore_errors=True)
    (out / "capture").mkdir(parents=True)
    (out / "filed").mkdir()
    capture = out / "capture" / f"pcap.{T0}"
    size = write_capture(capture, args.big_packets)
    node_env = {
        "PAR_DATA_DIR": str(out / "node"),
        "PAR_CAPTURE_DIR": str(out / "capture"),
        "PAR_FILER_DIR": str(out / "filed"),
        "PAR_MAX_WINDOW": "3600",
        "PAR_COMPRESS": args.compress,
    }
    (out / "node").mkdir()
    base = collector_env(out / "collector", PAR_KEY_STREAMS="64")
    # The large file filed and indexed, as an hour-old capture is; a small live file beside it.
    g.write_pcap(
        out / "capture" / f"pcap.{T0 + 60}",
        [((T0 + 60) * 10**9, g.ether(g.udp("10.9.9.9", 1, "10.9.9.8", 2, b"")))],
    )
    ceiling = cat_rate(capture)  # of the capture's own bytes, before the filer may compress them
    manage(node_env, "runfiler", role="node")
    threads = os.environ.get("PAR_THREADS", "default")
    extra = os.environ.get("GUNICORN_CMD_ARGS", "")
    print(
        f"capture: {size / 1e6:.0f} MB (filed, indexed, compression {args.compress}), {args.big_packets} packets in the large flow; "
        f"gunicorn.conf.py, 2 workers, threads {threads} {extra}; {load_average()}"
    )
    with ExitStack() as stack:
        node = stack.enter_context(server("node", node_env, out / "node.log"))
        set_up_collector(base, [node], KEY)
        collector = stack.enter_context(server("collector", base, out / "collector.log"))
        roles = {
            "node": (node, {}),
            "collector": (collector, {"api_key": KEY, "node_id": "1"}),
        }
        small = {**SMALL, **WINDOW}
        big = {**BIG, **WINDOW}
        print("\n## small calls")
        at = f" at {args.download_rate}/s" if args.download_rate else ""
        for situation in ("idle", f"{args.downloads} downloads{at}", f"{args.half_heads} half heads"):
            for role, (url, extra) in roles.items():
                with ExitStack() as load:
                    if "downloads" in situation:
                        downloads = load.enter_context(
                            Downloads(
                                f"{url}/data.pcap",
                                {**big, **extra},
                                args.downloads,
                                args.download_rate,
                                args.seconds,  # each ends by then, saying what it got
                            )
                        )
                    if "half heads" in situation:
                        load.enter_context(half_heads(url, args.half_heads))
                    pings = timed_calls(f"{url}/ping", extra or None, args.seconds / 2)
                    queries = timed_calls(f"{url}/data.pcap", {**small, **extra}, args.seconds / 2)
                rate = ""
                if "downloads" in situation:  # counted once they have stopped
                    rate = f"  downloads: {downloads.bytes / 1e6 / (args.seconds + 1):.0f} MB/s in all"
                print(f"{role:9} {situation:22} /ping       {summary(pings)}")
                print(f"{role:9} {situation:22} small pcap  {summary(queries)}{rate}")
        print("\n## one large stream")
        for role, (url, extra) in roles.items():
            before = {name: server_cpu(u) for name, (u, _) in roles.items()}
            rate, nbytes = stream_rate(f"{url}/data.pcap", {**big, **extra})
            used = {name: server_cpu(u) - before[name] for name, (u, _) in roles.items()}
            cpu = ", ".join(
                f"{name} {seconds * 1000 / (3 * nbytes / 1e6):.2f} ms CPU/MB"
                for name, seconds in used.items()
                if seconds
            )
            print(f"{role:9} {nbytes / 1e6:.0f} MB at {rate:6.0f} MB/s  ({cpu})")
        print(f"cat       {size / 1e6:.0f} MB at {ceiling:6.0f} MB/s (the machine's ceiling for these bytes)")


if __name__ == "__main__":
    main()
