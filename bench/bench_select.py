"""Benchmark: selections (a host, a network) and flow listings over a 1-hour window of one-minute files.

    .venv/bin/python bench/bench_select.py                 # 60 one-minute files, about 2 MB each
    .venv/bin/python bench/bench_select.py --file-mb 16    # a busier link (about 1 GB in all)

Writes under bench/out/select/ (git-ignored) with the generator of ``bench/bench.py`` (mixed
IPv4/IPv6, TCP/UDP/SCTP, VLANs, new flows every minute, a few long-lived ones, an elephant), indexes
the files, then times, in one run:

    /data.pcap src_addr=<host>           engine.query.plan.query_captures   vs  tcpdump -V - -w - "host H"
    /data.pcap src_addr=10.0.0.0/12      engine.query.plan.query_captures   vs  tcpdump -V - -w - "net N"
    /flows (all flows, one hour)         engine.flows.listing.list_flows
    /flows src_addr=<host>               engine.flows.listing.list_flows

checking that both sides of each /data.pcap comparison hold the same records. Prints median
wall times over ``--repeat`` runs and the rows listed.

With ``--http``, the same files are also laid out (hard links) as the filer trees of two nodes,
which are started under gunicorn with a collector (``bench/harness.py``), and the two
listings are timed over HTTP: from a node, through the collector from one node, and from both
merged (every flow twice, one row per node).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402

import bench as base  # noqa: E402
from engine.flows.listing import list_flows  # noqa: E402
from engine.index import build_index, index_is_current  # noqa: E402
from engine.query.plan import estimate, query_captures  # noqa: E402
from engine.selection.selectors import Selection  # noqa: E402

HTTP_KEY = "5d1c9e2b-7a4f-4b3e-8c6d-0f1e2a3b4c5d"


def bpf(expression: str) -> str:
    """``expression`` for untagged, 802.1Q and QinQ (802.1ad + 802.1Q) frames alike.

    libpcap's ``vlan`` moves the offsets of everything compiled after it, across ``or`` too, so
    ``(E) or (vlan and E) or (vlan and vlan and E)`` looks for the third alternative's tags 4 bytes
    too far (it misses QinQ frames). Nested, each ``vlan`` moves only the alternatives inside it.
    """
    return f"({expression}) or (vlan and ({expression} or (vlan and {expression})))"


def timed(function, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def records(data: bytes) -> int:
    """Records of a classic pcap stream."""
    count, at = 0, 24
    while at < len(data):
        count += 1
        at += 16 + int.from_bytes(data[at + 8 : at + 12], "little")
    return count


def tcpdump(files: list[Path], expression: str) -> bytes:
    listing = "".join(f"{p}\n" for p in files).encode()
    done = subprocess.run(
        ["tcpdump", "-V", "-", "-w", "-", bpf(expression)], input=listing, capture_output=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode())
    return done.stdout


def filer_tree(folder: Path, files: list[Path]) -> None:
    """``folder``/filed/YYYY/MM/DD/HH/ holding hard links of ``files`` and their indexes; an empty capture dir."""
    (folder / "capture").mkdir(parents=True)
    for path in files:
        epoch = int(path.name.split(".")[1])
        hour = datetime.fromtimestamp(epoch, UTC).strftime("%Y/%m/%d/%H")
        target = folder / "filed" / hour
        target.mkdir(parents=True, exist_ok=True)
        for source in (path, path.with_name(path.name + ".idx")):
            os.link(source, target / source.name)


def http_listings(files: list[Path], out: Path, host: str, repeat: int) -> None:
    """/flows over HTTP: a node, the collector asking one node, the collector merging two."""
    where = out / "http"
    shutil.rmtree(where, ignore_errors=True)
    start, end = str(base.T0), f"{base.T0 + len(files) * base.FILE_SECONDS - 1}.999999999"
    window = {"start_time": start, "end_time": end, "limit": "100000"}
    with ExitStack() as stack:
        nodes = []
        for n in (1, 2):
            folder = where / f"node{n}"
            filer_tree(folder, files)
            env = {
                "PAR_DATA_DIR": str(folder),
                "PAR_CAPTURE_DIR": str(folder / "capture"),
                "PAR_FILER_DIR": str(folder / "filed"),
            }
            nodes.append(stack.enter_context(harness.server("node", env, folder / "gunicorn.log")))
        env = harness.collector_env(where / "collector")
        harness.set_up_collector(env, nodes, HTTP_KEY)
        collector = stack.enter_context(
            harness.server("collector", env, where / "collector" / "gunicorn.log")
        )
        asked = [
            ("node", f"{nodes[0]}/flows", {}),
            ("collector, 1 node", f"{collector}/flows", {"node_id": "1", "api_key": HTTP_KEY}),
            ("collector, 2 nodes", f"{collector}/flows", {"node_id": "1,2", "api_key": HTTP_KEY}),
        ]
        for name, selectors in (("all flows", {}), ("host", {"src_addr": host})):
            for label, url, extra in asked:
                params = {**window, **selectors, **extra}
                requests.get(url, params=params, timeout=120).raise_for_status()  # warm: indexes opened
                took, answer = timed(lambda u=url, p=params: requests.get(u, params=p, timeout=120), repeat)
                answer.raise_for_status()
                body = answer.json()
                print(
                    f"http flows {name:10s} {label:18s} {took * 1000:8.1f} ms  {len(body['flows'])} rows"
                    f"  {len(answer.content) / 2**20:5.1f} MB JSON"
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=60, help="one-minute files (default 60: one hour)")
    parser.add_argument("--file-mb", type=float, default=2.0, help="MB per file (default 2)")
    parser.add_argument("--flows-per-minute", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "select")
    parser.add_argument("--http", action="store_true", help="also time /flows from a node and a collector")
    args = parser.parse_args(argv)
    folder = args.out / f"{args.files}x{args.file_mb}MB"
    started = time.perf_counter()
    files = base.generate(folder, args.files, int(args.file_mb * 2**20), args.flows_per_minute, 0.05)
    for path in files:
        if not index_is_current(path):
            build_index(path)
    total = sum(p.stat().st_size for p in files)
    print(f"{len(files)} files, {total / 2**20:.0f} MB, ready in {time.perf_counter() - started:.1f} s")
    window = (base.T0 * 10**9, (base.T0 + len(files) * base.FILE_SECONDS) * 10**9 - 1)
    host = base.minute_flows(0, args.flows_per_minute)[-1].a  # a long-lived client: in every file
    network = "10.0.0.0/12"
    cases = [
        ("host", Selection(*window, src=ipaddress.ip_network(host)), f"host {host}"),
        ("network", Selection(*window, src=ipaddress.ip_network(network)), f"net {network}"),
    ]
    for name, selection, expression in cases:
        ours_s, data = timed(lambda s=selection: b"".join(query_captures(files, s)), args.repeat)
        est_s, e = timed(lambda s=selection: estimate(files, s), args.repeat)
        line = f"data.pcap {name:8s} ours {ours_s:7.3f} s  {records(data):8d} packets {len(data) / 2**20:7.1f} MB"
        line += f"  estimate {est_s * 1000:6.1f} ms ({e.packets} packets)"
        if shutil.which("tcpdump"):
            seed_s, theirs = timed(lambda x=expression: tcpdump(files, x), args.repeat)
            same = data[24:] == theirs[24:]
            line += f"  tcpdump {seed_s:7.3f} s  x{seed_s / ours_s:5.1f}  same answer: {same}"
        print(line)
    for name, selection in (("all flows", Selection(*window)), ("host", cases[0][1])):
        took, listing = timed(lambda s=selection: list_flows(files, s, limit=100_000), args.repeat)
        print(
            f"flows {name:10s} {took * 1000:8.1f} ms  {len(listing.rows)} rows (truncated: {listing.truncated})"
        )
    if args.http:
        http_listings(files, folder, host, args.repeat)
    print(harness.load_average())


if __name__ == "__main__":
    main()
