"""A capture file that shrinks under a reader is damage, not a clean end (records it held are gone)."""

from __future__ import annotations

import os
from ipaddress import ip_address

import pytest

import pcapgen as g
from engine.formats import CaptureTruncated, open_capture
from engine.query.plan import query_captures
from engine.selection.selectors import FlowQuery

FRAME = g.ether(g.tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"x" * 1000))
NS = 1_000_000_000
T0 = 1_700_000_000  # seconds


def write_capture(path, packets: int) -> None:
    g.write_pcap(path, [(T0 * NS + i * 1000, FRAME) for i in range(packets)])


def test_a_file_truncated_during_a_scan_raises_instead_of_ending_cleanly(tmp_path):
    path = tmp_path / f"pcap.{T0}"
    write_capture(path, 3000)  # 3 MB: more than one read
    with open_capture(path) as capture:
        records = iter(capture)
        next(records)
        os.truncate(path, 24 + 100 * (16 + len(FRAME)))
        with pytest.raises(CaptureTruncated, match="shrank while being read"):
            for _ in records:
                pass


def test_a_file_truncated_before_a_random_read_raises(tmp_path):
    path = tmp_path / f"pcap.{T0}"
    write_capture(path, 100)
    with open_capture(path) as capture:
        offsets = [record.offset for record in capture]
        os.truncate(path, offsets[50])
        assert capture.record_at(offsets[10]) is not None  # what is still there reads as before
        with pytest.raises(CaptureTruncated):
            capture.record_at(offsets[80])
        with pytest.raises(CaptureTruncated):
            list(capture.records_at(offsets[40:]))


def test_a_file_that_grows_while_read_still_ends_cleanly(tmp_path):
    path = tmp_path / f"pcap.{T0}"
    write_capture(path, 10)
    with open_capture(path) as capture:
        with open(path, "ab") as live:
            live.write(g.pcap_record(T0 * NS + 10**6, FRAME)[:30])  # a record being written
        assert len(list(capture)) == 10


def test_a_query_over_a_file_truncated_mid_answer_fails_instead_of_a_short_answer(tmp_path):
    path = tmp_path / f"pcap.{T0}"
    write_capture(path, 3000)
    query = FlowQuery(ip_address("10.0.0.1"), 1234, ip_address("10.0.0.2"), 80, T0 * NS, (T0 + 60) * NS)
    chunks = query_captures([path], query, chunk_size=1 << 14)
    next(chunks)
    os.truncate(path, 24 + 100 * (16 + len(FRAME)))
    with pytest.raises(CaptureTruncated):
        for _ in chunks:
            pass
