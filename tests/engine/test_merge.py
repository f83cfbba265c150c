"""Merging capture streams read from byte chunks: time order, formats, precision, failures, memory."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.formats import open_capture
from engine.formats.stream import StreamError, StreamReader
from engine.merge.merger import Merger, SourceFailed
from engine.query.answer import Limits
from pcapgen import Interface, ether, pcap_bytes, pcapng_bytes, raw, sll, tcp, udp

T0 = 1_700_000_000 * 10**9


def chunked(data: bytes, seed: int = 0, largest: int = 97) -> Iterator[bytes]:
    """``data`` in random small pieces, as a network would hand it over."""
    rng = random.Random(seed)
    i = 0
    while i < len(data):
        n = rng.randint(1, largest)
        yield data[i : i + n]
        i += n


def packets(count: int, start: int, step: int, tag: str) -> list[tuple[int, bytes]]:
    return [
        (start + i * step, ether(tcp("10.0.0.1", 1000, "10.0.0.2", 80, f"{tag}{i}".encode() * (i % 9))))
        for i in range(count)
    ]


def merge(streams: list[bytes], names: list[str] | None = None, **options) -> tuple[Merger, bytes]:
    readers = []
    for n, data in enumerate(streams):
        reader = StreamReader(chunked(data, seed=n), name=f"s{n}")
        reader.read_header()
        readers.append(reader)
    merger = Merger(readers, names or [f"node {n + 1} sensor" for n in range(len(streams))], **options)
    return merger, b"".join(merger.stream())


def records(tmp_path: Path, data: bytes) -> list[tuple[int, int, bytes, int]]:
    path = tmp_path / "answer"
    path.write_bytes(data)
    with open_capture(path) as capture:
        return [(r.ts_ns, r.linktype, r.data, r.orig_len) for r in capture]


def union(*streams: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Every stream's packets sorted by time, ties in stream order (a stable sort)."""
    tagged = [(ts, n, i, frame) for n, stream in enumerate(streams) for i, (ts, frame) in enumerate(stream)]
    return [(ts, frame) for ts, _, _, frame in sorted(tagged)]


def test_classic_streams_of_one_link_type_merge_into_a_classic_pcap_byte_for_byte():
    a = packets(300, T0, 7_000, "a")
    b = packets(200, T0 + 3_000, 11_000, "b")
    merger, out = merge([pcap_bytes(a), pcap_bytes(b)])
    assert not merger.pcapng and merger.content_type == "application/vnd.tcpdump.pcap"
    assert out == pcap_bytes(union(a, b))


def test_equal_times_go_to_the_stream_listed_first():
    a = [(T0 + i * 1000, ether(udp("10.0.0.1", 1, "10.0.0.2", 2, b"a%d" % i))) for i in range(50)]
    b = [(T0 + i * 1000, ether(udp("10.0.0.1", 1, "10.0.0.2", 2, b"b%d" % i))) for i in range(50)]
    _, out = merge([pcap_bytes(a), pcap_bytes(b)])
    assert out == pcap_bytes([x for pair in zip(a, b, strict=True) for x in pair])


def test_nanosecond_streams_stay_classic_and_exact():
    a = [(T0 + i * 1_001 + 7, frame) for i, (_, frame) in enumerate(packets(100, 0, 1, "a"))]
    b = [(T0 + i * 1_003 + 1, frame) for i, (_, frame) in enumerate(packets(100, 0, 1, "b"))]
    merger, out = merge([pcap_bytes(a, nanosecond=True), pcap_bytes(b, nanosecond=True)])
    assert merger.nanosecond and not merger.pcapng
    assert out == pcap_bytes(union(a, b), nanosecond=True)


def test_a_big_endian_stream_is_rewritten_in_the_answers_byte_order(tmp_path):
    a = packets(40, T0, 5_000, "a")
    b = packets(40, T0 + 1_000, 5_000, "b")
    merger, out = merge([pcap_bytes(a), pcap_bytes(b, big_endian=True)])
    assert not merger.pcapng
    assert out == pcap_bytes(union(a, b))


def test_micro_and_nanosecond_streams_make_a_pcapng_that_loses_no_nanosecond(tmp_path):
    micro = packets(30, T0, 9_000_000, "u")
    nano = [(T0 + 1 + i * 4_000_003, frame) for i, (_, frame) in enumerate(packets(30, 0, 1, "n"))]
    merger, out = merge([pcap_bytes(micro), pcap_bytes(nano, nanosecond=True)], ["node 1 a", "node 2 b"])
    assert merger.pcapng and merger.content_type == "application/x-pcapng"
    got = records(tmp_path, out)
    assert [(ts, data) for ts, _, data, _ in got] == union(micro, nano)
    assert b"node 1 a" in out and b"node 2 b" in out


def test_link_types_that_differ_make_a_pcapng_with_an_interface_per_stream(tmp_path):
    a = packets(20, T0, 10_000, "a")
    b = [(T0 + 5_000 + i * 10_000, raw(udp("10.0.0.9", 53, "10.0.0.8", 5353, b"q%d" % i))) for i in range(20)]
    merger, out = merge([pcap_bytes(a), pcap_bytes(b, linktype=101)], ["node 1 one", "node 3 three"])
    assert merger.pcapng
    got = records(tmp_path, out)
    assert [(ts, data) for ts, _, data, _ in got] == union(a, b)
    assert [lt for _, lt, _, _ in got] == [1 if data[12:14] == b"\x08\x00" else 101 for _, _, data, _ in got]


def test_format_pcapng_is_kept_even_for_one_stream(tmp_path):
    a = packets(10, T0, 10_000, "a")
    merger, out = merge([pcap_bytes(a)], ["node 7 roof"], pcapng=True)
    assert merger.pcapng and b"node 7 roof" in out
    assert [(ts, data) for ts, _, data, _ in records(tmp_path, out)] == a


def test_a_pcapng_stream_with_two_interfaces_keeps_their_link_types_and_resolution(tmp_path):
    frames = [ether(udp("10.0.0.1", 1, "10.0.0.2", 2, b"e")), sll(udp("10.0.0.1", 1, "10.0.0.2", 2, b"s"))]
    ifaces = [Interface(1, tsresol=9), Interface(113, tsresol=6)]
    ng = [(i % 2, T0 + i * 1_000_000 + (7 if i % 2 == 0 else 0), frames[i % 2]) for i in range(20)]
    classic = packets(20, T0 + 500_000, 1_000_000, "c")
    merger, out = merge([pcapng_bytes(ifaces, ng), pcap_bytes(classic)])
    got = records(tmp_path, out)
    expected = union([(ts, frame) for _, ts, frame in ng], classic)
    assert [(ts, data) for ts, _, data, _ in got] == expected
    assert merger.pcapng


def test_one_pcapng_interface_of_classic_precision_gives_a_classic_pcap():
    a = packets(15, T0, 1_000, "a")
    ng = pcapng_bytes([Interface(1, tsresol=6)], [(0, ts, frame) for ts, frame in a])
    merger, out = merge([ng])
    assert not merger.pcapng
    assert out == pcap_bytes(a)


def test_streams_with_no_packet_give_a_header_only_answer():
    merger, out = merge([pcap_bytes([]), pcap_bytes([])])
    assert out == pcap_bytes([])


def test_a_stream_cut_inside_a_record_fails_naming_it():
    good = pcap_bytes(packets(10, T0, 1000, "a"))
    cut = pcap_bytes(packets(10, T0, 1000, "b"))[:-5]
    with pytest.raises(SourceFailed) as failed:
        merge([good, cut])
    assert failed.value.index == 1 and isinstance(failed.value.cause, StreamError)


def test_a_stream_whose_transport_fails_fails_naming_it():
    def broken() -> Iterator[bytes]:
        data = pcap_bytes(packets(100, T0, 1000, "x"))
        yield data[:2000]
        raise ConnectionResetError("node went away")

    readers = [StreamReader(iter([pcap_bytes(packets(100, T0, 1000, "a"))])), StreamReader(broken())]
    for reader in readers:
        reader.read_header()
    with pytest.raises(SourceFailed) as failed:
        b"".join(Merger(readers, ["a", "b"]).stream())
    assert failed.value.index == 1 and isinstance(failed.value.cause, ConnectionResetError)


def test_bytes_that_are_no_capture_are_refused_at_the_header():
    reader = StreamReader(iter([b"<html>nginx</html>"]))
    with pytest.raises(StreamError):
        reader.read_header()


def test_the_merge_reads_a_stream_only_as_far_as_the_answer_needs():
    """Flat memory: while the first stream's packets come first, the other is not read ahead."""
    pulled = {"late": 0}

    def late() -> Iterator[bytes]:
        data = pcap_bytes(packets(5000, T0 + 10**12, 1000, "late"))
        for i in range(0, len(data), 4096):
            pulled["late"] += 1
            yield data[i : i + 4096]

    early = pcap_bytes(packets(5000, T0, 1000, "early"))
    readers = [
        StreamReader(iter([early[i : i + 4096] for i in range(0, len(early), 4096)])),
        StreamReader(late()),
    ]
    for reader in readers:
        reader.read_header()
    out = Merger(readers, ["a", "b"]).stream()
    size = 0
    for chunk in out:
        size += len(chunk)
        if size > len(early) // 2:
            break
    assert pulled["late"] <= 2  # its header and one batch, whatever the length of the other stream


def test_packet_times_of_a_pcapng_answer_use_each_interfaces_resolution(tmp_path):
    nano = [(T0 + 123_456_789, ether(udp("10.0.0.1", 1, "10.0.0.2", 2, b"n")))]
    micro = [(T0 + 1_000, ether(udp("10.0.0.1", 1, "10.0.0.2", 2, b"u")))]
    _, out = merge([pcap_bytes(nano, nanosecond=True), pcap_bytes(micro)])
    got = records(tmp_path, out)
    assert [ts for ts, *_ in got] == [T0 + 1_000, T0 + 123_456_789]
    # the nanosecond interface says so (if_tsresol = 9); the microsecond one keeps the default
    assert struct.pack("<HHB", 9, 1, 9) in out


def _record_ends(data: bytes) -> list[int]:
    """Where each record of an answer ends (bytes from its start): its clean cut points."""
    ends, header = [], 24
    if data[:4] == b"\x0a\x0d\x0d\x0a":  # pcapng: walk the blocks, a packet ends at its block's end
        at = 0
        while at < len(data):
            kind, length = struct.unpack_from("<II", data, at)
            at += length
            if kind in (6, 3):
                ends.append(at)
            elif not ends:
                header = at
        return [header, *ends]
    at = header
    while at < len(data):
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
        ends.append(at)
    return [header, *ends]


@pytest.mark.parametrize("kind", ["classic", "pcapng", "big-endian"])
def test_limits_end_the_merged_answer_at_a_record_boundary_in_time_order(tmp_path, kind):
    a = packets(300, T0, 7_000, "a")
    b = packets(200, T0 + 3_000, 11_000, "b")
    streams = [pcap_bytes(a), pcap_bytes(b, big_endian=kind == "big-endian")]
    options = {"pcapng": kind == "pcapng"}
    _, whole = merge(streams, **options)
    ends = _record_ends(whole)
    for n in (1, 2, 37, 499, 500, 10_000):
        _, cut = merge(streams, limits=Limits(packets=n), **options)
        assert cut == whole[: ends[min(n, 500)]], n
    for size in (0, ends[0], ends[0] + 1, ends[1], ends[1] + 1, ends[250] - 1, ends[250], len(whole), 10**9):
        _, cut = merge(streams, limits=Limits(bytes=size), **options)
        fits = max([e for e in ends[1:] if e <= size], default=ends[0])
        assert cut == whole[:fits], size
    _, both = merge(streams, limits=Limits(packets=100, bytes=ends[150]), **options)
    assert both == whole[: ends[100]]
    _, both = merge(streams, limits=Limits(packets=100, bytes=ends[50] + 3), **options)
    assert both == whole[: ends[50]]
