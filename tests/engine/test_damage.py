"""Capture files damaged part-way (a crash, a full disk): indexed and read up to the damage, named, never hiding a window."""

from __future__ import annotations

import struct

import pytest

import pcapgen as g
from engine.formats import CaptureError
from engine.index import build_index, forget_open_indexes, index_path, open_index
from engine.query.plan import DamageReport, query_captures
from tests.engine.conftest import T0, flow, pcap_records

A, B = "10.0.0.1", "10.0.0.2"
FRAME = g.ether(g.udp(A, 1000, B, 53, b"q" * 100))
OTHER = g.ether(g.udp("10.9.9.9", 7, "10.9.9.8", 7, b"o" * 100))
GOOD = 5  # records before the damage


def records(first: int, n: int = 10) -> list[tuple[int, bytes]]:
    """``n`` records of the flow (every other one of another flow), a millisecond apart."""
    return [(T0 + (first + i) * 1_000_000, FRAME if i % 2 == 0 else OTHER) for i in range(n)]


def damaged_pcap(kind: str) -> tuple[bytes, int]:
    """A classic pcap of ``records(100)`` damaged at its record GOOD: (bytes, offset of the damage)."""
    data = bytearray(g.pcap_bytes(records(100)))
    at = 24 + GOOD * len(g.pcap_record(0, FRAME))
    if kind == "truncated mid-record":
        return bytes(data[: at + 16 + 30]), at
    data[at + 8 : at + 12] = struct.pack("<I", 0x7FFFFFFF)  # a captured length no record has
    return bytes(data), at


def damaged_pcapng() -> tuple[bytes, int]:
    """A pcapng of ``records(100)`` whose packet block GOOD has an impossible block length."""
    blocks = [(0, ts, frame) for ts, frame in records(100)]
    at = len(g.pcapng_bytes([1], blocks[:GOOD]))
    data = bytearray(g.pcapng_bytes([1], blocks))
    data[at + 4 : at + 8] = struct.pack("<I", 7)
    return bytes(data), at


DAMAGES = ["truncated mid-record", "corrupted record header", "pcapng bad block length"]


def write_damaged(tmp_path, kind: str):
    data, at = damaged_pcapng() if kind.startswith("pcapng") else damaged_pcap(kind)
    path = tmp_path / f"pcap.{T0 // 10**9 + 60}"
    path.write_bytes(data)
    return path, at


def times(answer: bytes) -> list[int]:
    return [secs * 10**9 + frac * 1000 for secs, frac, _, _ in pcap_records(answer)[1]]


def flow_times(first: int, n: int) -> list[int]:
    return [ts for ts, frame in records(first, n) if frame == FRAME]


@pytest.fixture(autouse=True)
def _fresh_indexes():
    forget_open_indexes()
    yield
    forget_open_indexes()


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_file_is_indexed_up_to_the_damage_and_its_index_says_where(tmp_path, kind):
    path, at = write_damaged(tmp_path, kind)
    stats = build_index(path)
    assert stats.packets == GOOD and f"at byte offset {at}" in stats.damage
    index = open_index(path)
    assert (index.records, index.damaged_at) == (GOOD, at)
    assert index.span == (T0 + 100 * 1_000_000, T0 + (100 + GOOD - 1) * 1_000_000)


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
@pytest.mark.parametrize("kind", DAMAGES)
def test_a_window_over_a_damaged_file_answers_from_everything_readable(tmp_path, kind, indexed):
    healthy = tmp_path / f"pcap.{T0 // 10**9}"
    g.write_pcap(healthy, records(0))
    damaged, _ = write_damaged(tmp_path, kind)
    if indexed:
        build_index(healthy)
        build_index(damaged)
    report = DamageReport()
    answer = b"".join(query_captures([healthy, damaged], flow(A, 1000, B, 53), damage=report))
    assert times(answer) == flow_times(0, 10) + flow_times(100, GOOD)
    # A file ending inside a record is only known as damage once filed (indexed): the live file
    # ends that way while it is written.
    known = indexed or kind != "truncated mid-record"
    assert report.names == ([damaged.name] if known else [])


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
def test_a_damaged_file_is_named_even_when_the_flow_is_not_in_what_is_readable(tmp_path, indexed):
    damaged, _ = write_damaged(tmp_path, "corrupted record header")
    if indexed:
        build_index(damaged)
    report = DamageReport()
    answer = b"".join(query_captures([damaged], flow("10.1.1.1", 1, "10.1.1.2", 2), damage=report))
    assert times(answer) == [] and report.names == [damaged.name]


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
def test_nothing_readable_in_the_window_is_still_an_error(tmp_path, indexed):
    path = tmp_path / f"pcap.{T0 // 10**9}"
    data = bytearray(g.pcap_bytes(records(0)))
    data[24 + 8 : 24 + 12] = struct.pack("<I", 0x7FFFFFFF)  # its first record
    path.write_bytes(bytes(data))
    not_a_capture = tmp_path / f"pcap.{T0 // 10**9 + 60}"
    not_a_capture.write_bytes(b"no capture file header here, just words")
    if indexed:
        build_index(path)
    with pytest.raises(CaptureError, match="damaged|impossible|not a pcap"):
        b"".join(query_captures([path, not_a_capture], flow(A, 1000, B, 53), damage=DamageReport()))
    # With one readable file beside them, the window answers and both are named.
    healthy = tmp_path / f"pcap.{T0 // 10**9 + 120}"
    g.write_pcap(healthy, records(200))
    report = DamageReport()
    answer = b"".join(query_captures([path, not_a_capture, healthy], flow(A, 1000, B, 53), damage=report))
    assert times(answer) == flow_times(200, 10)
    assert sorted(report.names) == sorted([path.name, not_a_capture.name])


def test_damage_a_scan_meets_after_the_answer_began_cuts_it_short(tmp_path):
    # Without an index the damage is only met while reading; once a chunk has gone it cannot be
    # named any more, so the answer fails rather than ending as if complete.
    damaged, _ = write_damaged(tmp_path, "corrupted record header")
    report = DamageReport()
    chunks = query_captures([damaged], flow(A, 1000, B, 53), chunk_size=1, damage=report)
    assert next(chunks).startswith(g.pcap_header()[:4])
    with pytest.raises(CaptureError, match="record length"):
        list(chunks)


def test_an_index_of_the_damage_keeps_a_scan_from_meeting_it(tmp_path):
    damaged, at = write_damaged(tmp_path, "pcapng bad block length")
    build_index(damaged)
    report = DamageReport()
    chunks = query_captures([damaged], flow(A, 1000, B, 53), chunk_size=1, damage=report)
    assert times(b"".join(chunks)) == flow_times(100, GOOD)
    assert [e.offset for e in report.found] == [at]
    assert index_path(damaged).exists()
