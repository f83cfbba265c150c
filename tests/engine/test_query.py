"""Flow queries over capture files: exact packets, time order, indexed or scanned alike."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapgen as g
from engine import formats
from engine.dissection.packet import dissect
from engine.index import FlowIndex, build_index, index_path, open_index
from engine.query.plan import CaptureFile, query_captures
from tests.engine.conftest import T0, answer, flow, fragment6, pcap_records, record_bytes

A, B = "10.0.0.1", "10.0.0.2"


def both_ways(index: bool, paths, q) -> bytes:
    """The answer with every file indexed, or with no index at all."""
    for path in paths:
        if index:
            build_index(path)
        else:
            index_path(path).unlink(missing_ok=True)
    return answer(paths, q)


def tcpdump_expression(a, a_port, b, b_port) -> str:
    # tcpdump's `vlan` shifts the offsets of everything after it, cumulatively: the untagged
    # test first, then one `vlan and` per tag depth, selects the frames of any depth up to 2.
    match = f"host {a} and host {b} and port {a_port} and port {b_port}"
    return f"({match}) or (vlan and {match}) or (vlan and {match})"


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    """Two minute-files of mixed traffic (IPv4/IPv6, TCP/UDP/SCTP, VLAN, QinQ) and their flows."""
    folder = tmp_path_factory.mktemp("traffic")
    flows = g.mixed_flows(60, seed=11, vlan_share=0.4, v6_share=0.4)
    paths = []
    for minute in range(2):
        path = folder / f"pcap.{T0 // 10**9 + 60 * minute}"
        g.write_pcap(path, g.mixed_traffic(T0 + minute * 60 * 10**9, 60, flows, pps=40, seed=minute))
        paths.append(path)
    return paths, flows


@pytest.mark.tools
@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
def test_the_answer_is_byte_identical_to_tcpdumps(traffic, tcpdump, tmp_path, indexed):
    """tcpdump is the oracle: same records, same bytes, both directions, VLAN, IPv6."""
    paths, flows = traffic
    chosen = [f for f in flows if f.proto != 132][:12]  # tcpdump `port` is TCP/UDP/SCTP alike, keep it simple
    assert any(f.vlans for f in chosen) and any(":" in f.a for f in chosen)
    two_way = 0
    for f in chosen:
        q = flow(f.a, f.a_port, f.b, f.b_port)
        ours = both_ways(indexed, paths, q)
        theirs = b"".join(tcpdump(p, tcpdump_expression(f.a, f.a_port, f.b, f.b_port))[24:] for p in paths)
        assert theirs and record_bytes(ours) == theirs, f
        senders = {dissect(1, frame).src for *_, frame in pcap_records(ours)[1]}
        two_way += len(senders) == 2
    assert two_way >= len(chosen) // 2


def test_the_window_is_inclusive_at_nanosecond_precision(tmp_path):
    path = tmp_path / "pcap.1700000000"
    times = [T0 + n for n in range(10)]
    g.write_pcap(
        path, [(t, g.ether(g.udp(A, 1, B, 2, b"%d" % i))) for i, t in enumerate(times)], nanosecond=True
    )
    for indexed in (True, False):
        data = both_ways(indexed, [path], flow(A, 1, B, 2, start=T0 + 3, end=T0 + 6))
        header, records = pcap_records(data)
        assert header["nanosecond"]
        assert [frac for _, frac, _, _ in records] == [3, 4, 5, 6]


def test_files_are_merged_in_time_order(tmp_path):
    first, second = tmp_path / "pcap.1700000000", tmp_path / "pcap.1700000001"
    g.write_pcap(first, [(T0 + t * 1000, g.ether(g.udp(A, 1, B, 2, b"%d" % t))) for t in (1, 3, 5)])
    g.write_pcap(second, [(T0 + t * 1000, g.ether(g.udp(B, 2, A, 1, b"%d" % t))) for t in (2, 4, 6)])
    build_index(first)  # one indexed, one scanned
    _, records = pcap_records(answer([first, second], flow(A, 1, B, 2)))
    assert [frac for _, frac, _, _ in records] == [1, 2, 3, 4, 5, 6]


def test_the_file_being_written_is_read_up_to_its_last_whole_record(tmp_path):
    live = tmp_path / "pcap.1700000000"
    data = g.pcap_bytes([(T0 + i * 1000, g.ether(g.tcp(A, 1, B, 2, b"x" * 100))) for i in range(5)])
    live.write_bytes(data[:-30])
    _, records = pcap_records(answer([live], flow(A, 1, B, 2)))
    assert len(records) == 4


def test_a_file_just_created_holds_nothing_yet(tmp_path):
    live = tmp_path / "pcap.1700000000"
    live.write_bytes(b"\xd4\xc3")
    assert answer([live], flow(A, 1, B, 2)) == formats.pcap_file_header(1, False)


def test_no_match_is_a_header_of_the_first_files_kind(tmp_path):
    path = tmp_path / "pcap.1700000000"
    g.write_pcap(path, [(T0, g.sll(g.udp(A, 1, B, 2)))], linktype=113, nanosecond=True)
    for indexed in (True, False):
        data = both_ways(indexed, [path], flow(A, 1, B, 3))
        assert pcap_records(data) == ({"linktype": 113, "nanosecond": True, "snaplen": 262144}, [])


def test_no_files_is_an_ethernet_microsecond_header():
    assert answer([], flow(A, 1, B, 2)) == formats.pcap_file_header(1, False)


def test_answers_from_captures_of_two_link_types_are_pcapng(tmp_path):
    ether, cooked = tmp_path / "pcap.1700000000", tmp_path / "pcap.1700000060"
    g.write_pcap(ether, [(T0, g.ether(g.udp(A, 1, B, 2)))])
    g.write_pcap(cooked, [(T0 + 60 * 10**9, g.sll(g.udp(B, 2, A, 1)))], linktype=113)
    out = tmp_path / "answer"
    out.write_bytes(answer([ether, cooked], flow(A, 1, B, 2)))
    with formats.open_capture(out) as capture:
        assert capture.kind == "pcapng"
        assert [r.linktype for r in capture] == [1, 113]


def test_fragments_of_a_matching_datagram_are_included(tmp_path):
    path = tmp_path / "pcap.1700000000"
    pieces = g.fragment(g.udp(A, 5000, B, 53, b"Q" * 200, ident=9), 64)
    others = g.fragment(g.udp(A, 5001, B, 53, b"R" * 200, ident=10), 64)
    frames = [pieces[0], others[0], *pieces[1:], *others[1:]]
    g.write_pcap(path, [(T0 + i * 1000, g.ether(f)) for i, f in enumerate(frames)])
    for indexed in (True, False):
        _, records = pcap_records(both_ways(indexed, [path], flow(A, 5000, B, 53)))
        assert [r[3][14:] for r in records] == pieces


def test_proto_narrows_the_flow_to_one_protocol(tmp_path):
    path = tmp_path / "pcap.1700000000"
    g.write_pcap(path, [(T0, g.ether(g.tcp(A, 53, B, 53))), (T0 + 1000, g.ether(g.udp(A, 53, B, 53)))])
    for indexed in (True, False):
        _, tcp_and_udp = pcap_records(both_ways(indexed, [path], flow(A, 53, B, 53)))
        _, udp_only = pcap_records(both_ways(indexed, [path], flow(A, 53, B, 53, proto=17)))
        assert (len(tcp_and_udp), len(udp_only)) == (2, 1)


def test_a_damaged_index_is_scanned_around(tmp_path):
    path = tmp_path / "pcap.1700000000"
    g.write_pcap(path, [(T0 + i, g.ether(g.udp(A, 1, B, 2))) for i in range(0, 5000, 1000)])
    expected = both_ways(False, [path], flow(A, 1, B, 2))
    build_index(path)
    index_path(path).write_bytes(b"PARINDEX" + bytes(100))
    assert answer([path], flow(A, 1, B, 2)) == expected


def damage_index(path, column: str, value: int, row: int = 0) -> None:
    """Overwrite entry ``row`` of one of the index's columns (as the reader maps it) with ``value``."""
    index = FlowIndex(index_path(path))
    table = index.columns[column]
    at = table.ctypes.data - np.frombuffer(index._map, np.uint8).ctypes.data + row * table.dtype.itemsize
    data = bytearray(index_path(path).read_bytes())
    data[at : at + table.dtype.itemsize] = np.array([value], dtype=table.dtype).tobytes()
    index_path(path).write_bytes(bytes(data))


@pytest.mark.parametrize(
    "kind, column, value, row",
    [
        ("pcap", "byaddr4", 2**32 - 1, 0),  # a lookup naming a flow that is not there
        ("pcap", "byport", 2**32 - 1, 0),
        ("pcap", "offsets", 0x7F, 5),  # a distance into the middle of the last record (of 75 bytes)
        ("pcap", "offsets", 58, 1),  # inside a record, where its UDP payload reads as a length
        ("pcap", "offsets", 0, 3),  # out of order
        ("pcap", "offsets", 0x80, 5),  # the last varint cut short
        ("pcap", "packets", 200, 0),  # more packets than there are offsets
        ("pcap", "linktype", 113, 0),  # another link type than the file's
        ("pcapng", "metablk", 2**63, 1),  # an interface block past the capture
        ("pcapng", "metablk", 28 + 20 + 20, 1),  # the first packet block, taken for an interface block
    ],
)
def test_an_index_damaged_inside_is_scanned_around(tmp_path, kind, column, value, row):
    """Its header and digest are right, so it opens; what it says must not crash or cut the answer."""
    path = tmp_path / "pcap.1700000000"
    frames = [g.ether(g.udp(A, 1, B, 2, b"\xff" * 16 + b"%d" % i)) for i in range(6)]
    if kind == "pcap":
        g.write_pcap(path, [(T0 + i * 1000, f) for i, f in enumerate(frames)])
    else:
        g.write_pcapng(path, [1, 1], [(0, T0 + i * 1000, f) for i, f in enumerate(frames)])
    q = flow(A, 1, B, 2)
    expected = both_ways(False, [path], q)
    build_index(path)
    damage_index(path, column, value, row)
    assert open_index(path) is None or open_index(path).records == 6
    assert answer([path], q) == expected
    assert len(pcap_records(expected)[1]) == 6


def test_a_file_handed_with_a_span_after_the_window_is_not_read(tmp_path):
    later = tmp_path / f"pcap.{T0 // 10**9 + 3600}"
    later.write_bytes(g.pcap_header() + b"\xff" * 64)  # would be an error if read
    span = (T0 + 3600 * 10**9, T0 + 3700 * 10**9)  # as the store decides it from the name
    file = CaptureFile(later, T0 // 10**9 + 3600, span)
    assert b"".join(query_captures([file], flow(A, 1, B, 2, end=T0))) == formats.pcap_file_header(1, False)


def test_closing_the_stream_closes_every_file(tmp_path, monkeypatch):
    opened, closed = [], []
    original_init, original_close = formats.Capture.__init__, formats.Capture.close

    def init(self, *args):
        original_init(self, *args)
        opened.append(self)

    def close(self):
        closed.append(self)
        original_close(self)

    monkeypatch.setattr(formats.Capture, "__init__", init)
    monkeypatch.setattr(formats.Capture, "close", close)
    paths = []
    for n in range(3):
        path = tmp_path / f"pcap.{T0 // 10**9 + n}"
        g.write_pcap(path, [(T0 + n * 10**9 + i, g.ether(g.udp(A, 1, B, 2, bytes(900)))) for i in range(300)])
        paths.append(path)
    stream = query_captures(paths, flow(A, 1, B, 2), chunk_size=1000)
    next(stream)
    stream.close()
    assert len(opened) == 3
    assert set(map(id, closed)) >= set(map(id, opened))
    assert all(c._file.closed for c in opened)


def test_pcapng_captures_are_answered_from_their_index_as_from_a_scan(tmp_path):
    path = tmp_path / "pcap.1700000000"
    ifaces = [g.Interface(1, 9), g.Interface(1, 6)]
    records = [(i % 2, T0 + i * 1000, g.ether(g.tcp(A, 1, B, 2, b"%d" % i))) for i in range(6)]
    g.write_pcapng(path, ifaces, records)
    indexed = both_ways(True, [path], flow(A, 1, B, 2))
    assert indexed == both_ways(False, [path], flow(A, 1, B, 2))
    assert len(pcap_records(indexed)[1]) == 6


# ---------------------------------------------------------------- property: index == scan

ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1", "2001:db8::2"]
PORTS = [53, 80, 443]
LINKTYPES = [1, 113, 276, 101, 0]


@st.composite
def packets(draw):
    v6 = draw(st.booleans())
    pool = ADDRESSES[3:] if v6 else ADDRESSES[:3]
    src, dst = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
    sport, dport = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "icmp", "frag"]))
    if kind == "icmp":
        return [g.ip(src, dst, 1, b"\x08\0\0\0")], (src, 0, dst, 0, 1)
    builder = {"tcp": g.tcp, "udp": g.udp, "sctp": g.sctp, "frag": g.udp}[kind]
    extra = {"ext_headers": draw(st.sampled_from([(), ("hop",), ("dest", "fragment")]))} if v6 else {}
    if not v6:
        extra["ip_options"] = draw(st.sampled_from([b"", g.ROUTER_ALERT]))
        extra["ident"] = draw(st.integers(0, 3))
    packet = builder(src, sport, dst, dport, b"p" * draw(st.integers(0, 120)), **extra)
    if kind == "frag":
        if v6:  # fragments of a packet without extension headers; an id reused across packets
            packet = g.udp(src, sport, dst, dport, b"p" * draw(st.integers(0, 120)))
            pieces = fragment6(packet, 24, ident=draw(st.integers(0, 3)))
        else:
            pieces = g.fragment(packet, 24)
        ends = (src, sport, dst, dport, 17)
        order = draw(st.sampled_from(["sent", "reversed", "any"]))
        if order != "sent":
            pieces = pieces[::-1] if order == "reversed" else draw(st.permutations(pieces))
        return pieces, ends
    return [packet], (src, sport, dst, dport, {"tcp": 6, "udp": 17, "sctp": 132, "frag": 17}[kind])


@st.composite
def captures(draw):
    linktype = draw(st.sampled_from(LINKTYPES))
    groups = draw(st.lists(packets(), min_size=1, max_size=25))
    frames = []
    for group, _ in groups:
        vlans = draw(st.sampled_from([(), (7,), ((g.QINQ, 8), 9), (1, 2, 3, 4)])) if linktype == 1 else ()
        frames += [g.ether(p, vlans) if linktype == 1 else g.frame(linktype, p) for p in group]
    if draw(st.integers(0, 3)) == 0:  # datagrams of several flows interleaved
        frames = draw(st.permutations(frames))
    times = sorted(draw(st.lists(st.integers(0, 10**6), min_size=len(frames), max_size=len(frames))))
    snaplen = draw(st.sampled_from([262144, 262144, 60]))
    records = [(T0 + t, f) for t, f in zip(times, frames, strict=True)]
    return linktype, records, snaplen, [ends for _, ends in groups]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(capture=captures(), nanosecond=st.booleans(), data=st.data())
def test_an_indexed_query_and_a_full_scan_always_agree(tmp_path, capture, nanosecond, data):
    linktype, records, snaplen, sent = capture
    path = Path(tmp_path) / f"pcap.{os.getpid()}"
    g.write_pcap(path, records, linktype=linktype, nanosecond=nanosecond, snaplen=snaplen)
    # mostly a flow that is in the capture (either way round), sometimes any flow at all
    anything = st.tuples(*(st.sampled_from(x) for x in (ADDRESSES, PORTS, ADDRESSES, PORTS, [6, 17, 132, 1])))
    src, sport, dst, dport, proto = data.draw(st.one_of(st.sampled_from(sent), anything))
    if data.draw(st.booleans()):
        src, sport, dst, dport = dst, dport, src, sport
    proto = data.draw(st.sampled_from([None, proto])) if proto != 1 else 1
    start = T0 + data.draw(st.sampled_from([-10, 0, 1, 10**5, 5 * 10**5]))
    end = start + data.draw(st.sampled_from([10**7, 0, 3 * 10**5, 10**6 - 1]))
    q = flow(src, sport, dst, dport, start=start, end=end, proto=proto)
    scanned = both_ways(False, [path], q)
    assert both_ways(True, [path], q) == scanned


@pytest.mark.tools
@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
def test_a_pcapng_with_a_name_resolution_block_before_its_interface_is_answered(tmp_path, tcpdump, indexed):
    """tcpdump is the oracle: blocks of other types may precede the interface block (here Linux cooked)."""
    path = tmp_path / "pcap.1700000000"
    name_resolution = (4, b"\0\0\0\0")  # an empty Name Resolution Block
    records = [(0, T0 + i * 1000, g.sll(g.udp(A, 1, B, 2, b"%d" % i))) for i in range(3)]
    g.write_pcapng(path, [g.Interface(113)], records, leading_blocks=[name_resolution])
    ours = both_ways(indexed, [path], flow(A, 1, B, 2))
    theirs = tcpdump(path, f"host {A} and host {B} and port 1 and port 2")
    assert pcap_records(ours) == pcap_records(theirs)
    assert len(pcap_records(ours)[1]) == 3
