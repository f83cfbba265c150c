"""A node's capture tree for API tests: filed (indexed) hours and a live file, with a known flow in it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.index import build_index
from node.store import hour_dir
from pcapgen import ether, pcap_bytes, pcap_header, pcap_record, tcp, udp, write_pcap

NS = 1_000_000_000
PCAP_HEADER_SIZE = 24
T0 = 1424966400  # 2015-02-26 16:00:00 UTC, the first file's epoch
FILE_SECONDS = 60
A, A_PORT, B, B_PORT = "10.0.0.1", 40000, "10.0.0.2", 80
# The seed's parameter names for the flow above, and a window covering every file.
FLOW = {"src_addr": A, "src_port": str(A_PORT), "dst_addr": B, "dst_port": str(B_PORT)}


def window(start_s: float, end_s: float) -> dict[str, str]:
    return {**FLOW, "start_time": f"{start_s:.9f}", "end_time": f"{end_s:.9f}"}


@dataclass
class Tree:
    capture_dir: Path
    filer_dir: Path
    files: list[Path] = field(default_factory=list)  # oldest first; the last one is live
    records: list[tuple[int, bytes, bool]] = field(default_factory=list)  # (ts_ns, frame, in the flow)

    def expected(self, start_ns: int, end_ns: int, *, proto: int | None = None) -> bytes:
        """The answer the API must give: the flow's frames in the window, as pcapgen writes them."""
        chosen = [
            (ts, frame)
            for ts, frame, in_flow in self.records
            # The files keep microseconds: a packet's time is what its record says.
            if in_flow
            and start_ns <= ts // 1000 * 1000 <= end_ns
            and (proto is None or frame[14 + 9] == proto)
        ]
        return pcap_bytes(sorted(chosen, key=lambda r: r[0]))

    def env(self) -> dict[str, str]:
        return {"PAR_CAPTURE_DIR": str(self.capture_dir), "PAR_FILER_DIR": str(self.filer_dir)}


def file_records(epoch: int, packets: int, payload: int) -> Iterator[tuple[int, bytes, bool]]:
    """One file's traffic: the flow both ways (TCP and UDP), and look-alikes that must not match."""
    step = FILE_SECONDS * NS // packets
    body = bytes(range(256)) * (payload // 256 + 1)
    for i in range(packets):
        ts = epoch * NS + i * step + 123  # never on a second boundary
        kind = i % 5
        if kind == 0:
            yield ts, ether(tcp(A, A_PORT, B, B_PORT, body[: payload - i % 7], seq=i)), True
        elif kind == 1:
            yield ts, ether(tcp(B, B_PORT, A, A_PORT, body[:40], seq=i, flags="A")), True
        elif kind == 2:
            yield ts, ether(udp(A, A_PORT, B, B_PORT, body[:100])), True
        elif kind == 3:
            yield ts, ether(tcp(A, A_PORT + 1, B, B_PORT, body[:60], seq=i)), False  # another port
        else:
            yield ts, ether(tcp("10.0.0.3", A_PORT, B, B_PORT, body[:60], seq=i)), False  # another host


def make_tree(
    root: Path, *, files: int = 3, packets: int = 500, payload: int = 600, index: bool = True
) -> Tree:
    """``files`` one-minute captures from T0 on: all filed (and indexed) but the last, which is live."""
    tree = Tree(root / "capture", root / "filed")
    tree.capture_dir.mkdir(parents=True)
    tree.filer_dir.mkdir(parents=True)
    for n in range(files):
        epoch = T0 + n * FILE_SECONDS
        live = n == files - 1
        directory = tree.capture_dir if live else hour_dir(tree.filer_dir, epoch, utc=True)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"pcap.{epoch}"
        records = list(file_records(epoch, packets, payload))
        write_pcap(path, ((ts, frame) for ts, frame, _ in records))
        # A finished file's mtime is its last packet; the live one is being written now.
        last_s = records[-1][0] / NS
        if not live:
            os.utime(path, (last_s, last_s))
            if index:
                build_index(path)
        tree.files.append(path)
        tree.records += records
    return tree


@dataclass
class BigCapture:
    """One large live capture file whose answer size and digest are known without holding it."""

    path: Path
    answer_bytes: int
    answer_sha256: str
    params: dict[str, str]


def make_big_capture(capture_dir: Path, *, cycles: int = 25_000) -> BigCapture:
    """About 4.5 kB of frames per cycle, 3 kB of it in the flow: 25 000 cycles give a 75 MB answer."""
    body = bytes(range(256)) * 6
    frames = [
        (ether(tcp(A, A_PORT, B, B_PORT, body[:1400])), True),
        (ether(tcp(B, B_PORT, A, A_PORT, b"", flags="A")), True),
        (ether(tcp(A, A_PORT + 1, B, B_PORT, body[:1400])), False),
        (ether(udp(A, A_PORT, B, B_PORT, body[:1400])), True),
    ]
    step_ns = FILE_SECONDS * NS // (cycles * len(frames))

    def records() -> Iterator[tuple[int, bytes, bool]]:
        for n in range(cycles * len(frames)):
            frame, in_flow = frames[n % len(frames)]
            yield (T0 * NS + n * step_ns) // 1000 * 1000, frame, in_flow

    path = capture_dir / f"pcap.{T0}"
    write_pcap(path, ((ts, frame) for ts, frame, _ in records()))
    digest, size = hashlib.sha256(pcap_header()), PCAP_HEADER_SIZE
    for ts, frame, in_flow in records():
        if in_flow:
            record = pcap_record(ts, frame)
            digest.update(record)
            size += len(record)
    return BigCapture(path, size, digest.hexdigest(), window(T0, T0 + FILE_SECONDS))
