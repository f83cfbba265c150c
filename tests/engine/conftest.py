"""Helpers of the engine tests: queries, an independent pcap parser, tcpdump as an oracle."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from engine.query.plan import query_captures
from engine.selection.selectors import FlowQuery

T0 = 1_700_000_000_000_000_000  # a whole second, in ns
END_OF_TIME = 2**63 - 1


def flow(a: str, a_port: int, b: str, b_port: int, start: int = 0, end: int = END_OF_TIME, proto=None):
    return FlowQuery(ipaddress.ip_address(a), a_port, ipaddress.ip_address(b), b_port, start, end, proto)


def answer(paths, q: FlowQuery) -> bytes:
    return b"".join(query_captures([Path(p) for p in paths], q))


def pcap_records(data: bytes) -> tuple[dict, list[tuple[int, int, int, bytes]]]:
    """(header facts, [(secs, frac, orig_len, frame)]) of a classic pcap, parsed without the engine."""
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    _, _, _, _, _, snaplen, linktype = struct.unpack(order + "IHHiIII", data[:24])
    nanosecond = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    records, at = [], 24
    while at < len(data):
        secs, frac, caplen, orig_len = struct.unpack_from(order + "IIII", data, at)
        records.append((secs, frac, orig_len, data[at + 16 : at + 16 + caplen]))
        at += 16 + caplen
    return {"linktype": linktype, "nanosecond": nanosecond, "snaplen": snaplen}, records


def record_bytes(data: bytes) -> bytes:
    """Everything after the 24-byte file header: the records, as written."""
    return data[24:]


@pytest.fixture
def tcpdump():
    """Run tcpdump as the oracle: the records of ``tcpdump -r file -w - EXPR``."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed: it is the oracle of this test")

    def run(path: Path, expression: str) -> bytes:
        done = subprocess.run(
            ["tcpdump", "-r", str(path), "-w", "-", expression], capture_output=True, timeout=60, check=True
        )
        return done.stdout

    return run


def fragment6(packet: bytes, size: int, ident: int) -> list[bytes]:
    """Split an IPv6 packet (no extension headers) into fragments of ``size`` (a multiple of 8) bytes."""
    next_header, src_dst, payload = packet[6], packet[8:40], packet[40:]
    pieces = []
    for start in range(0, len(payload), size):
        piece = payload[start : start + size]
        more = 1 if start + size < len(payload) else 0
        header = struct.pack("!IHBB", 6 << 28, 8 + len(piece), 44, 64) + src_dst
        pieces.append(header + struct.pack("!BBHI", next_header, 0, start | more, ident) + piece)
    return pieces
