"""Benchmark: index build and flow queries against the seed's tcpdump pipeline, in one run.

    .venv/bin/python bench/bench.py                  # about 1 GB in 60-second files
    .venv/bin/python bench/bench.py --size-mb 200    # a quick check
    .venv/bin/python bench/bench.py --grow 4         # then again over 4x the capture
    .venv/bin/python bench/bench.py --mix dns        # DNS-like short flows instead (--mix both: each)
    .venv/bin/python bench/bench.py --index-only     # index build rate and size only, no queries
    .venv/bin/python bench/bench.py --jobs 2         # the builds again in 2 worker processes

Writes under bench/out/ (git-ignored). Generates minute files of mixed traffic (IPv4/IPv6, TCP/UDP/
SCTP, 802.1Q/802.1ad, thousands of flows, new flows every minute plus a few long-lived ones and one
elephant), indexes them, then times flow queries over the whole capture both ways:

    ours:  engine.query.plan.query_captures(files, flow)       (in-process, as the node serves it)
    seed:  printf '<file list>' | tcpdump -V - -w - "host A and host B and port X and port Y"

and prints the index build rate, index size as a share of the capture, the median query times and
their ratio, and the peak memory of a separate process streaming the elephant flow's answer.

The DNS-like mix (``--mix dns``) is minute files of 200k short UDP flows to port 53, 2-10 packets
each, ~190-byte frames (``pcapgen.dns_traffic``): the traffic where per-flow index costs dominate.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pcapgen as g  # noqa: E402
from engine import index as index_module  # noqa: E402
from engine.index import build_index, index_path  # noqa: E402
from engine.query.plan import query_captures  # noqa: E402
from engine.selection.selectors import FlowQuery  # noqa: E402
from node.jobs import Workers  # noqa: E402

T0 = 1_700_000_000  # epoch seconds of the first file
FILE_SECONDS = 60
SIZES = (0, 0, 0, 0, 120, 300, 600, 1400, 1400, 1400)  # TCP payloads: many ACKs, many full segments
ELEPHANT = g.Flow(6, "10.200.0.1", 50000, "198.51.100.200", 443)


def minute_flows(minute: int, count: int) -> list[g.Flow]:
    """The flows of one minute: new ones every minute, plus long-lived ones present in every minute."""
    return g.mixed_flows(count, seed=1000 + minute) + g.mixed_flows(50, seed=7)


def mean_record_bytes(elephant_share: float) -> int:
    """About the mean record size of the mix (header, Ethernet/IP/TCP and payload)."""
    others = 16 + 14 + 20 + 20 + 0.75 * sum(SIZES) / len(SIZES) + 0.25 * 205 + 0.3 * 20 + 0.2 * 5
    return int(elephant_share * (16 + 54 + 1400) + (1 - elephant_share) * others)


def write_minute(
    path: Path, minute: int, target_bytes: int, flows_per_minute: int, elephant_share: float
) -> int:
    """One minute file of about ``target_bytes``; frames are built once per (flow, direction, size)."""
    rng = random.Random(minute)
    flows = minute_flows(minute, flows_per_minute)
    weights = [1.0 / (rank + 1) for rank in range(len(flows))]
    rng.shuffle(weights)
    built: dict[tuple, bytes] = {}
    blob = bytes(range(256)) * 6
    start_ns = (T0 + minute * FILE_SECONDS) * 10**9
    packets = target_bytes // mean_record_bytes(elephant_share)
    step = FILE_SECONDS * 10**9 // packets
    chosen = rng.choices(range(len(flows)), weights=weights, k=packets)
    written = 0
    with open(path, "wb", buffering=1 << 20) as out:
        out.write(g.pcap_header())
        for n, index in enumerate(chosen):
            elephant = rng.random() < elephant_share
            flow = ELEPHANT if elephant else flows[index]
            size = (
                1400 if elephant else rng.choice(SIZES) if flow.proto == 6 else rng.choice((40, 80, 200, 500))
            )
            key = (flow, rng.random() < 0.5, size)
            frame = built.get(key)
            if frame is None:
                frame = built[key] = flow.frame(key[1], blob[:size], seq=size)
            ts = start_ns + n * step + rng.randrange(step)
            out.write(g.pcap_record(ts - ts % 1000, frame))
            written += 1
    return written


def generate(
    folder: Path, files: int, file_bytes: int, flows_per_minute: int, elephant_share: float
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for minute in range(files):
        path = folder / f"pcap.{T0 + minute * FILE_SECONDS}"
        if not path.exists():
            tmp = path.with_name("." + path.name)
            write_minute(tmp, minute, file_bytes, flows_per_minute, elephant_share)
            tmp.rename(path)
        paths.append(path)
    return paths


DNS_T0 = 1_710_000_000  # the DNS-like mix's first file


def dns_flow(minute: int, flows: int) -> g.Flow:
    """One flow of the DNS-like mix's minute file (its first packet's ends)."""
    for _, frame in g.dns_traffic((DNS_T0 + minute * FILE_SECONDS) * 10**9, FILE_SECONDS, flows, seed=minute):
        src, dst = ipaddress.ip_address(frame[26:30]), ipaddress.ip_address(frame[30:34])
        sport, dport = int.from_bytes(frame[34:36], "big"), int.from_bytes(frame[36:38], "big")
        return g.Flow(17, str(src), sport, str(dst), dport)
    raise ValueError("no packets")


def generate_dns(folder: Path, files: int, flows: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for minute in range(files):
        path = folder / f"pcap.{DNS_T0 + minute * FILE_SECONDS}"
        if not path.exists():
            tmp = path.with_name("." + path.name)
            start_ns = (DNS_T0 + minute * FILE_SECONDS) * 10**9
            g.write_pcap(tmp, g.dns_traffic(start_ns, FILE_SECONDS, flows, seed=minute))
            tmp.rename(path)
        paths.append(path)
    return paths


def load_compiled() -> None:
    """Load the index build's compiled code (numba) before any build is timed, and say what it cost."""
    wall, cpu = time.perf_counter(), time.process_time()
    from engine.index import native  # numba itself is imported here: its import is part of the cost

    native.load()
    print(
        f"compiled code ready in {time.perf_counter() - wall:.2f} s wall / {time.process_time() - cpu:.2f} s CPU"
        " (once per process: numba's start-up and its cached machine code, or compiling it when not cached)"
    )


def index_all(paths: list[Path], jobs: int = 1) -> dict:
    """Index every file, one at a time or in ``jobs`` worker processes as runfiler/reindex --jobs do."""
    packets = capture_bytes = index_bytes = 0
    wall, cpu = time.perf_counter(), time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Workers(jobs) as workers:
        for stats in [workers.submit(build_index, path) for path in paths]:
            stats = stats.result()
            packets += stats.packets
            capture_bytes += stats.capture_bytes
            index_bytes += stats.index_bytes
    wall = time.perf_counter() - wall
    done = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped when the block ends
    cpu = time.process_time() - cpu + done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime
    return {
        "packets": packets,
        "capture_bytes": capture_bytes,
        "index_bytes": index_bytes,
        "wall": wall,
        "cpu": cpu,
    }


def query_of(f: g.Flow, files: list[Path]) -> FlowQuery:
    first = int(files[0].name.rsplit(".", 1)[1])
    start = first * 10**9
    end = (first + len(files) * FILE_SECONDS) * 10**9
    return FlowQuery(ipaddress.ip_address(f.a), f.a_port, ipaddress.ip_address(f.b), f.b_port, start, end)


def ours(files: list[Path], f: g.Flow) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    data = b"".join(query_captures(files, query_of(f, files)))
    return time.perf_counter() - started, len(data), data


def seed(files: list[Path], f: g.Flow) -> tuple[float, int, bytes]:
    expression = f"host {f.a} and host {f.b} and port {f.a_port} and port {f.b_port}"
    listing = "".join(f"{p}\n" for p in files).encode()
    started = time.perf_counter()
    done = subprocess.run(
        ["tcpdump", "-V", "-", "-w", "-", expression], input=listing, capture_output=True, check=True
    )
    return time.perf_counter() - started, len(done.stdout), done.stdout


def forget_open_indexes() -> None:
    index_module.forget_open_indexes()


def scan_one_file(files: list[Path], which: int, f: g.Flow) -> tuple[float, int]:
    """Seconds to answer from one file without its index (the window still the whole capture), its size."""
    path = files[which]
    index = index_path(path)
    kept = index.with_name(index.name + ".kept")
    index.rename(kept)
    try:
        started = time.perf_counter()
        b"".join(query_captures([path], query_of(f, files)))
        return time.perf_counter() - started, path.stat().st_size
    finally:
        kept.rename(index)


def pick_queries(files: list[Path], count: int, flows_per_minute: int) -> list[g.Flow]:
    """Untagged flows (the seed's expression cannot see VLAN frames) that started in the capture's middle."""
    rng = random.Random(42)
    picked: list[g.Flow] = []
    while len(picked) < count:
        minute = rng.randrange(len(files) // 4, max(len(files) // 4 + 1, 3 * len(files) // 4))
        candidates = [f for f in g.mixed_flows(flows_per_minute, seed=1000 + minute)[:300] if not f.vlans]
        picked.append(rng.choice(candidates))
    return picked


def peak_memory_of_streaming(files: list[Path], f: g.Flow) -> tuple[int, int]:
    """(answer bytes, peak RSS in bytes) of a separate process streaming the flow's answer to /dev/null."""
    code = (
        "import sys, ipaddress; sys.path.insert(0, sys.argv[1]);"
        "from pathlib import Path; from engine.selection.selectors import FlowQuery;"
        "from engine.query.plan import query_captures;"
        "files = [Path(p) for p in sys.argv[8:]];"
        "q = FlowQuery(ipaddress.ip_address(sys.argv[2]), int(sys.argv[3]), ipaddress.ip_address(sys.argv[4]),"
        " int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]));"
        "n = 0\n"
        "with open('/dev/null', 'wb') as out:\n"
        "    for chunk in query_captures(files, q): out.write(chunk); n += len(chunk)\n"
        # VmHWM is this process's own peak: ru_maxrss would carry the parent's over from fork/exec
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(n, hwm)"
    )
    q = query_of(f, files)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(ROOT),
            f.a,
            str(f.a_port),
            f.b,
            str(f.b_port),
            str(q.start_ns),
            str(q.end_ns),
        ]
        + [str(p) for p in files],
        capture_output=True,
        text=True,
        check=True,
    )
    size, peak_kib = done.stdout.split()
    return int(size), int(peak_kib) * 1024


def print_build(label: str, built: dict) -> None:
    print(
        f"{label}: {built['packets']:,} packets in {built['wall']:.2f} s wall / {built['cpu']:.2f} s CPU"
        f" = {built['packets'] / built['wall']:,.0f} packets/s wall, {built['packets'] / built['cpu']:,.0f} packets/s CPU"
    )


def measure(
    files: list[Path], queries: list[g.Flow], label: str, index_only: bool = False, jobs: int = 1
) -> dict:
    print(f"\n== {label}: {len(files)} files, {sum(p.stat().st_size for p in files) / 2**20:.0f} MiB")
    built = index_all(files)
    print_build("index build", built)
    if jobs > 1:
        print_build(f"index build, --jobs {jobs}", index_all(files, jobs))
    share = built["index_bytes"] / built["capture_bytes"]
    print(
        f"index size: {built['index_bytes']:,} bytes = {100 * share:.2f}% of {built['capture_bytes']:,} capture bytes"
    )
    if index_only:
        return built
    cold_times, ours_times, seed_times = [], [], []
    for f in queries:
        forget_open_indexes()
        t_cold, _, _ = ours(files, f)  # every index opened and checked against its capture
        t_ours, n_ours, data_ours = ours(files, f)  # as a running node answers: indexes kept open
        t_seed, n_seed, data_seed = seed(files, f)
        same = data_ours[24:] == data_seed[24:]
        cold_times.append(t_cold)
        ours_times.append(t_ours)
        seed_times.append(t_seed)
        print(
            f"  {f.a}:{f.a_port} <-> {f.b}:{f.b_port}/{f.proto}: ours {1000 * t_ours:7.1f} ms"
            f" (first {1000 * t_cold:6.1f} ms, {n_ours:,} B)"
            f"  tcpdump {1000 * t_seed:8.1f} ms ({n_seed:,} B)  same records: {same}"
        )
    mc, mo, ms = (statistics.median(x) for x in (cold_times, ours_times, seed_times))
    print(
        f"median query: ours {1000 * mo:.1f} ms (first, opening every index: {1000 * mc:.1f} ms),"
        f" tcpdump pipeline {1000 * ms:.1f} ms; ratio {ms / mo:.0f}x ({ms / mc:.0f}x first)"
    )
    scan_time, scan_bytes = scan_one_file(files, len(files) // 2, queries[0])
    print(
        f"scanning one unindexed file (as the live file is): {scan_bytes / 2**20:.0f} MiB in {scan_time:.2f} s"
    )
    if files[0].name.endswith(str(T0)):
        size, peak = peak_memory_of_streaming(files, ELEPHANT)
        print(
            f"streaming the elephant flow: {size / 2**20:.0f} MiB answer, peak RSS of the query process {peak / 2**20:.0f} MiB"
        )
    return {"ours": mo, "cold": mc, "seed": ms, **built}


def measure_mixed(args: argparse.Namespace) -> None:
    folder = args.out / "captures"
    if args.fresh and folder.exists():
        shutil.rmtree(folder)
    file_bytes = args.file_mb << 20
    files = max(1, round(args.size_mb / args.file_mb))
    total = files * max(1, args.grow)
    print(f"generating {total} files of {args.file_mb} MiB in {folder} ...", flush=True)
    started = time.perf_counter()
    paths = generate(folder, total, file_bytes, args.flows, args.elephant_share)
    for path in paths:
        index_path(path).unlink(missing_ok=True)
    print(f"generated in {time.perf_counter() - started:.0f} s")
    queries = pick_queries(paths[:files], args.queries, args.flows)
    base = measure(paths[:files], queries, f"mixed link, {args.size_mb} MiB", args.index_only, args.jobs)
    if args.grow > 1 and not args.index_only:
        grown = measure(paths, queries, f"{args.grow}x: {args.size_mb * args.grow} MiB")
        print(
            f"\ngrowth {args.grow}x: our median query {grown['ours'] / base['ours']:.2f}x"
            f" (first {grown['cold'] / base['cold']:.2f}x), tcpdump pipeline {grown['seed'] / base['seed']:.2f}x"
        )


def measure_dns(args: argparse.Namespace) -> None:
    folder = args.out / "dns"
    if args.fresh and folder.exists():
        shutil.rmtree(folder)
    file_bytes = args.dns_flows * 6 * 207  # 2-10 packets a flow, ~190-byte frames and their headers
    files = max(1, round(args.size_mb / (file_bytes / 2**20)))
    print(f"generating {files} DNS-like files of {args.dns_flows:,} flows in {folder} ...", flush=True)
    started = time.perf_counter()
    paths = generate_dns(folder, files, args.dns_flows)
    for path in paths:
        index_path(path).unlink(missing_ok=True)
    print(f"generated in {time.perf_counter() - started:.0f} s")
    queries = [dns_flow(minute, args.dns_flows) for minute in range(files)][: args.queries]
    label = f"DNS-like short flows, {args.dns_flows:,} a minute"
    measure(paths, queries, label, args.index_only, args.jobs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="capture size (MiB)")
    parser.add_argument("--file-mb", type=int, default=64, help="size of one 60-second file (MiB)")
    parser.add_argument("--flows", type=int, default=3000, help="new flows per minute")
    parser.add_argument("--queries", type=int, default=7, help="flows to query")
    parser.add_argument(
        "--elephant-share", type=float, default=0.2, help="share of packets of the elephant flow"
    )
    parser.add_argument(
        "--grow", type=int, default=0, help="then measure again over this many times the capture"
    )
    parser.add_argument("--mix", choices=("mixed", "dns", "both"), default="mixed", help="traffic mix")
    parser.add_argument("--dns-flows", type=int, default=200_000, help="flows per minute of the DNS-like mix")
    parser.add_argument("--index-only", action="store_true", help="measure the index build and size only")
    parser.add_argument(
        "--jobs", type=int, default=1, help="then build the indexes again in this many worker processes"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--fresh", action="store_true", help="regenerate the capture files")
    args = parser.parse_args(argv)
    if shutil.which("tcpdump") is None:
        sys.exit("tcpdump is needed: it runs the seed's pipeline")
    load_compiled()
    if args.mix in ("mixed", "both"):
        measure_mixed(args)
    if args.mix in ("dns", "both"):
        measure_dns(args)
    print(
        f"\npeak RSS of this benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
