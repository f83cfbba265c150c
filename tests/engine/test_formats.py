"""Reading classic pcap and pcapng; writing answers as pcap or pcapng."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

import pcapgen as g
from engine.formats import CaptureError, CaptureWriter, IncompleteHeader, Record, open_capture
from engine.index import FlowIndex, build_index, index_path
from tests.engine.conftest import T0, pcap_records

PACKETS = [
    g.ether(g.tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"hello")),
    g.ether(g.udp("2001:db8::1", 53, "2001:db8::2", 5353, b"x" * 300)),
    g.ether(g.sctp("10.0.0.1", 2905, "10.0.0.2", 2905, b"abc")),
]


def read_all(path):
    with open_capture(path) as capture:
        return list(capture)


@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_classic_pcap_records_come_back_with_offsets_and_integer_ns_times(tmp_path, nanosecond, big_endian):
    path = tmp_path / "pcap.1700000000"
    times = [T0 + 123_456_789, T0 + 1_000_000_001, T0 + 2_999_999_999]
    g.write_pcap(path, zip(times, PACKETS, strict=True), nanosecond=nanosecond, big_endian=big_endian)
    records = read_all(path)
    expected = times if nanosecond else [t - t % 1000 for t in times]
    assert [r.ts_ns for r in records] == expected
    assert all(isinstance(r.ts_ns, int) for r in records)
    assert [r.data for r in records] == PACKETS
    assert [r.linktype for r in records] == [1, 1, 1]
    offsets = [24]
    for packet in PACKETS[:-1]:
        offsets.append(offsets[-1] + 16 + len(packet))
    assert [r.offset for r in records] == offsets


def test_a_record_longer_than_the_snaplen_keeps_its_original_length(tmp_path):
    path = tmp_path / "cut"
    g.write_pcap(path, [(T0, PACKETS[1])], snaplen=64)
    [record] = read_all(path)
    assert record.data == PACKETS[1][:64]
    assert record.orig_len == len(PACKETS[1])


@pytest.mark.parametrize("cut", [1, 8, 15, 16, 20])
def test_a_last_record_cut_short_ends_the_read_cleanly(tmp_path, cut):
    path = tmp_path / "live"
    data = g.pcap_bytes([(T0 + i * 1000, p) for i, p in enumerate(PACKETS)])
    last = 24 + sum(16 + len(p) for p in PACKETS[:2])
    path.write_bytes(data[: last + cut])
    assert [r.data for r in read_all(path)] == PACKETS[:2]


def test_a_record_with_an_impossible_length_is_an_error_naming_file_and_offset(tmp_path):
    path = tmp_path / "corrupt"
    data = bytearray(g.pcap_bytes([(T0 + i * 1000, p) for i, p in enumerate(PACKETS)]))
    second = 24 + 16 + len(PACKETS[0])
    data[second + 8 : second + 12] = struct.pack("<I", 0x7FFFFFF0)
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError) as caught:
        read_all(path)
    assert str(path) in str(caught.value)
    assert f"offset {second}" in str(caught.value)


def test_a_file_that_is_no_capture_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, this is not a capture file at all")
    with pytest.raises(CaptureError, match="not a pcap or pcapng file"):
        open_capture(path)


@pytest.mark.parametrize("size", [0, 3, 12])
def test_a_file_without_its_whole_header_yet_is_incomplete_not_corrupt(tmp_path, size):
    path = tmp_path / "pcap.1700000000"
    path.write_bytes(g.pcap_bytes([(T0, PACKETS[0])])[:size])
    with pytest.raises(IncompleteHeader):
        open_capture(path)


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_with_two_interfaces_and_their_own_resolutions(tmp_path, big_endian):
    path = tmp_path / "two.pcapng"
    ifaces = [g.Interface(g.LINKTYPE_ETHERNET, 6), g.Interface(g.LINKTYPE_RAW, 9, name="tun0")]
    raw = g.udp("10.9.9.9", 1, "10.9.9.8", 2, b"raw")
    g.write_pcapng(
        path,
        ifaces,
        [(0, T0 + 5_000, PACKETS[0]), (1, T0 + 5_123, raw), (0, T0 + 7_000, PACKETS[2])],
        big_endian=big_endian,
    )
    with open_capture(path) as capture:
        assert capture.kind == "pcapng"
        assert capture.linktypes == [1, 101]
        assert capture.nanosecond
        records = list(capture)
    assert [(r.ts_ns, r.linktype, r.data) for r in records] == [
        (T0 + 5_000, 1, PACKETS[0]),
        (T0 + 5_123, 101, raw),
        (T0 + 7_000, 1, PACKETS[2]),
    ]


def test_pcapng_binary_resolution_and_simple_packet_blocks(tmp_path):
    path = tmp_path / "spb.pcapng"
    g.write_pcapng(
        path, [g.Interface(1, 0x80 | 20)], [(0, T0 + (1 << 10), PACKETS[0]), (None, None, PACKETS[1])]
    )
    records = read_all(path)
    # 2**-20 s ticks: 1024 ns is not a whole tick, the reader keeps what the file says
    assert records[0].ts_ns == (T0 + 1024) * 2**20 // 10**9 * 10**9 // 2**20
    assert records[1].ts_ns == records[0].ts_ns  # no timestamp of its own: the one before it
    assert [r.data for r in records] == PACKETS[:2]


def test_pcapng_cut_short_ends_cleanly_and_broken_blocks_are_errors(tmp_path):
    data = g.pcapng_bytes([1], [(0, T0, p) for p in PACKETS])
    live = tmp_path / "live.pcapng"
    live.write_bytes(data[:-10])
    assert [r.data for r in read_all(live)] == PACKETS[:2]
    broken = tmp_path / "broken.pcapng"
    damaged = bytearray(data)
    damaged[-4:] = b"\0\0\0\0"  # trailing length disagrees with the leading one
    broken.write_bytes(bytes(damaged))
    with pytest.raises(CaptureError, match="lengths disagree"):
        read_all(broken)


@pytest.mark.parametrize("seconds", [2**32, 2**64 - 1], ids=["year-2106", "end-of-u64"])
def test_a_pcapng_time_a_pcap_cannot_carry_is_an_error_naming_the_offset(tmp_path, seconds):
    """A classic pcap answer holds u32 seconds; such a time is damage, not a crash of index or answer."""
    path = tmp_path / "pcap.1700000000"
    interfaces, first = [g.Interface(1, tsresol=0)], (0, T0, PACKETS[0])
    g.write_pcapng(path, interfaces, [first, (0, seconds * 10**9, PACKETS[1])])
    second_block = len(g.pcapng_bytes(interfaces, [first]))
    with pytest.raises(CaptureError, match=f"time .* at byte offset {second_block}$"):
        read_all(path)
    stats = build_index(path)  # a finished file is indexed up to the damage, which its index records
    assert stats.packets == 1 and f"at byte offset {second_block}" in stats.damage
    assert FlowIndex(index_path(path)).damaged_at == second_block


def test_record_at_reads_one_record_and_records_at_many(tmp_path):
    path = tmp_path / "cap"
    g.write_pcap(path, [(T0 + i, p) for i, p in enumerate(PACKETS)], nanosecond=True)
    records = read_all(path)
    with open_capture(path) as capture:
        assert capture.record_at(records[1].offset) == records[1]
        assert list(capture.records_at([r.offset for r in records])) == records


def test_the_writer_keeps_link_type_and_precision(tmp_path):
    writer = CaptureWriter([113], nanosecond=True)
    record = Record(0, T0 + 7, 113, g.sll(g.tcp("10.0.0.1", 1, "10.0.0.2", 2)), 70)
    data = b"".join(writer.stream([record]))
    header, records = pcap_records(data)
    assert header["linktype"] == 113
    assert header["nanosecond"]
    assert records == [(T0 // 10**9, 7, 70, record.data)]


def test_the_writer_streams_in_chunks_of_about_the_asked_size():
    writer = CaptureWriter([1])
    records = [Record(0, T0 + i * 1000, 1, b"\0" * 1000, 1000) for i in range(100)]
    chunks = list(writer.stream(records, chunk_size=10_000))
    assert len(chunks) > 5
    assert all(len(c) < 12_000 for c in chunks)
    assert len(pcap_records(b"".join(chunks))[1]) == 100


def test_mixed_link_types_are_written_as_pcapng_that_tshark_reads(tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: it is the oracle of this test")
    writer = CaptureWriter([1, 101])
    records = [
        Record(0, T0 + 1000, 1, PACKETS[0], len(PACKETS[0])),
        Record(0, T0 + 2000, 101, g.udp("10.0.0.1", 7, "10.0.0.2", 9), 28),
    ]
    path = tmp_path / "answer.pcapng"
    path.write_bytes(b"".join(writer.stream(records)))
    assert [(r.linktype, r.ts_ns, r.data) for r in read_all(path)] == [
        (r.linktype, r.ts_ns, r.data) for r in records
    ]
    shown = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_id", "-e", "ip.src"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split("\n")
    assert shown[:2] == ["0\t10.0.0.1", "1\t10.0.0.1"]


def test_records_far_apart_are_read_with_windows_of_about_their_size(tmp_path):
    path = tmp_path / "pcap.1700000000"
    frames = [g.ether(g.udp("10.0.0.1", 1, "10.0.0.2", 2, bytes(1000))) for _ in range(300)]
    g.write_pcap(path, [(T0 + n * 1000, f) for n, f in enumerate(frames)])
    with open_capture(path) as capture:
        everything = list(capture)
        wanted = [everything[n].offset for n in (0, 100, 200, 299)]  # ~100 KiB apart
        asked = []
        real_read = capture.read
        capture.read = lambda offset, size: asked.append(size) or real_read(offset, size)
        assert [r.offset for r in capture.records_at(wanted)] == wanted
    assert len(asked) == 4 and max(asked) <= 4096
