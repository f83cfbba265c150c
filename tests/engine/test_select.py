"""Selections over real generated captures: each selector alone and combined, indexed == scanned == truth.

The truth is the generator's own: every packet is written with the flow it belongs to (for ICMP its
type and code), and a selection's answer is checked against a predicate written here from the
SPEC's words, not against the engine's.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapgen as g
from engine.communityid import community_digest, community_id
from engine.flow import Selection, address16
from engine.index import build_index, index_path
from engine.index.lookup import ROW_DTYPE
from engine.query import estimate, query_captures
from engine.select import FEW_ROWS, SelectionMatcher
from tests.engine.conftest import T0, fragment6, pcap_records
from tests.engine.test_query import captures

US = 1000


@dataclass(frozen=True)
class Truth:
    """What the generator sent: a packet's flow as sent (src first), ICMP ports being type and code."""

    proto: int
    src: str
    sport: int
    dst: str
    dport: int

    def community_id(self) -> str:
        a, b = (address16(ipaddress.ip_address(x)) for x in (self.src, self.dst))
        return community_id(a, self.sport, b, self.dport, self.proto)

    def ports(self) -> tuple[int, int]:
        """Ports as a selection sees them: ICMP type and the reply's type, or the code (Zeek's mapping)."""
        if self.proto not in (1, 58):
            return self.sport, self.dport
        pairs = {8: 0, 0: 8, 13: 14, 14: 13, 128: 129, 129: 128, 135: 136, 136: 135}
        return self.sport, pairs.get(self.sport, self.dport)


def wanted(t: Truth, given: dict) -> bool:
    """docs/SPEC.md "Selecting packets", read literally."""
    proto = given.get("proto")
    if proto is None and ("src_port" in given or "dst_port" in given):
        if t.proto not in (6, 17, 132):
            return False
    elif proto is not None and t.proto != proto:
        return False
    if "community_id" in given and t.community_id() != given["community_id"]:
        return False
    sport, dport = t.ports()

    def end(address, port, prefix) -> bool:
        net = given.get(prefix + "_addr")
        if net is not None and ipaddress.ip_address(address) not in ipaddress.ip_network(net):
            return False
        return given.get(prefix + "_port") in (None, port)

    forward = end(t.src, sport, "src") and end(t.dst, dport, "dst")
    return forward or (end(t.dst, dport, "src") and end(t.src, sport, "dst"))


def _traffic() -> list[tuple[bytes, Truth]]:
    """IP packets of every kind the SPEC names, each with its truth (later fragments: their datagram's)."""
    out: list[tuple[bytes, Truth]] = []
    for f in g.mixed_flows(24, seed=4, v6_share=0.4, sctp_share=0.1):
        for n in range(3):
            forward = n != 1
            t = (
                Truth(f.proto, f.a, f.a_port, f.b, f.b_port)
                if forward
                else Truth(f.proto, f.b, f.b_port, f.a, f.a_port)
            )
            out.append((f.packet(forward, b"x" * 20, n), t))
    tcp = g.tcp("10.7.0.1", 40000, "192.0.2.80", 443, b"hello")
    out.append((tcp, Truth(6, "10.7.0.1", 40000, "192.0.2.80", 443)))
    # an ICMP error quoting that TCP header belongs to ICMP
    out.append((g.icmp_error("192.0.2.254", tcp), Truth(1, "192.0.2.254", 3, "10.7.0.1", 1)))
    v6tcp = g.tcp("fd00::7", 40001, "2001:db8::80", 443, b"hi", ext_headers=("hop", "dest"))
    out.append((v6tcp, Truth(6, "fd00::7", 40001, "2001:db8::80", 443)))
    out.append((g.icmp_error("2001:db8::fe", v6tcp), Truth(58, "2001:db8::fe", 1, "fd00::7", 1)))
    for seq, (a, b) in enumerate((("10.7.0.1", "10.9.9.9"), ("fd00::7", "fd00::9"))):
        ask, answer = (8, 0) if ":" not in a else (128, 129)
        proto = 1 if ":" not in a else 58
        out.append((g.icmp_echo(a, b, 77, seq), Truth(proto, a, ask, b, 0)))
        out.append((g.icmp_echo(b, a, 77, seq, reply=True), Truth(proto, b, answer, a, 0)))
    big = g.udp("10.7.0.2", 5000, "198.51.100.9", 53, b"q" * 100, ident=99)
    for piece in g.fragment(big, 32):
        out.append((piece, Truth(17, "10.7.0.2", 5000, "198.51.100.9", 53)))
    big6 = g.udp("fd00::2", 5001, "2001:db8::53", 53, b"q" * 100)
    for piece in fragment6(big6, 32, ident=5):
        out.append((piece, Truth(17, "fd00::2", 5001, "2001:db8::53", 53)))
    out.append((g.ip("10.7.0.3", "10.7.0.4", 47, b"\0" * 8), Truth(47, "10.7.0.3", 0, "10.7.0.4", 0)))
    return out


VLANS = [(), (7,), ((g.QINQ, 8), 9)]


@pytest.fixture(scope="module")
def capture_set(tmp_path_factory):
    """Three files of the same traffic: Ethernet (VLAN, QinQ) µs pcap, Linux cooked ns pcap, pcapng ns."""
    folder = tmp_path_factory.mktemp("select")
    traffic = _traffic()
    files, truths = [], []
    for n, kind in enumerate(("ether", "sll", "pcapng")):
        path = folder / f"pcap.{T0 // 10**9 + 60 * n}"
        base = T0 + n * 60 * 10**9
        records = []
        for i, (packet, truth) in enumerate(traffic):
            ts = base + i * 7 * US
            frame = g.ether(packet, VLANS[i % 3]) if kind != "sll" else g.sll(packet)
            records.append((ts, frame))
            truths.append((ts, truth))
        if kind == "pcapng":
            g.write_pcapng(path, [g.Interface(1, tsresol=9)], [(0, ts, fr) for ts, fr in records])
        else:
            g.write_pcap(path, records, linktype=1 if kind == "ether" else 113, nanosecond=kind == "sll")
        files.append(path)
    return files, truths


def answer(files, selection: Selection, indexed: bool) -> bytes:
    for path in files:
        if indexed:
            build_index(path)
        else:
            index_path(path).unlink(missing_ok=True)
    return b"".join(query_captures(files, selection))


def times_of(data: bytes) -> list[int]:
    """Timestamps (ns) of a pcap or pcapng answer's packets."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return pcapng_times(data)
    header, records = pcap_records(data)
    scale = 1 if header["nanosecond"] else 1000
    return [secs * 10**9 + frac * scale for secs, frac, _, _ in records]


def pcapng_times(data: bytes) -> list[int]:
    import struct

    out, at, resol = [], 0, {}
    while at < len(data):
        kind, length = struct.unpack_from("<II", data, at)
        if kind == 1:
            resol[len(resol)] = 9 if b"\x09\x00\x01\x00\x09" in data[at : at + length] else 6
        if kind == 6:
            iface, hi, lo = struct.unpack_from("<III", data, at + 8)
            ticks = hi << 32 | lo
            out.append(ticks if resol[iface] == 9 else ticks * 1000)
        at += length
    return out


TCP_FLOW_ID = Truth(6, "10.7.0.1", 40000, "192.0.2.80", 443).community_id()
ECHO_ID = Truth(1, "10.7.0.1", 8, "10.9.9.9", 0).community_id()
ERROR_ID = Truth(1, "192.0.2.254", 3, "10.7.0.1", 1).community_id()
CASES = {
    "nothing": {},
    "a host": {"src_addr": "10.7.0.1"},
    "a host as dst": {"dst_addr": "10.7.0.1"},
    "a v4 network": {"src_addr": "10.0.0.0/8"},
    "a v6 network": {"dst_addr": "2001:db8::/32"},
    "network to port": {"src_addr": "10.0.0.0/8", "dst_port": 443},
    "a port": {"dst_port": 53},
    "both ports": {"src_port": 5000, "dst_port": 53},
    "tcp": {"proto": 6},
    "sctp": {"proto": 132},
    "icmp": {"proto": 1},
    "icmp6": {"proto": 58},
    "gre": {"proto": 47},
    "icmp echo type": {"proto": 1, "src_port": 8},
    "community id of tcp": {"community_id": TCP_FLOW_ID},
    "community id of an echo": {"community_id": ECHO_ID},
    "community id of an icmp error": {"community_id": ERROR_ID},
    "community id and a wrong port": {"community_id": TCP_FLOW_ID, "dst_port": 80},
    "combined": {"src_addr": "10.0.0.0/8", "dst_addr": "198.51.100.9", "dst_port": 53, "proto": 17},
    "nothing there": {"src_addr": "203.0.113.0/24"},
}


EMPTY = ("nothing there", "community id and a wrong port")


def selection_of(given: dict, start: int = 0, end: int = 2**62) -> Selection:
    renamed = {("src" if k == "src_addr" else "dst" if k == "dst_addr" else k): v for k, v in given.items()}
    return Selection(start, end, **renamed)


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_selector_alone_and_combined_takes_exactly_its_packets(capture_set, case, indexed):
    files, truths = capture_set
    given = CASES[case]
    expected = [ts for ts, truth in truths if wanted(truth, given)]
    got = times_of(answer(files, selection_of(given), indexed))
    assert got == expected
    assert bool(got) is (case not in EMPTY), "the case selects something, or is meant to select nothing"


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
def test_the_window_includes_both_of_its_ends_exactly(capture_set, indexed):
    files, truths = capture_set
    given = {"src_addr": "10.0.0.0/8"}
    hits = [ts for ts, truth in truths if wanted(truth, given)]
    start, end = hits[3], hits[-4]
    got = times_of(answer(files, selection_of(given, start, end), indexed))
    assert got == hits[3:-3]
    assert times_of(answer(files, selection_of(given, start + 1, end - 1), indexed)) == hits[4:-4]


def test_the_estimate_bounds_the_answer_from_the_index(capture_set):
    files, _ = capture_set
    for path in files:
        build_index(path)
    for asked in CASES.values():
        s = selection_of(asked)
        data = b"".join(query_captures(files, s))
        packets = len(times_of(data))
        e = estimate(files, s)
        assert packets <= e.packets and len(data) <= e.bytes
        if "community_id" not in asked and asked.get("proto") not in (1, 58):
            assert e.packets == packets  # whole files inside the window: exact


def test_an_unindexed_file_is_estimated_whole(capture_set):
    files, _ = capture_set
    index_path(files[0]).unlink(missing_ok=True)
    e = estimate(files[:1], selection_of({"src_addr": "203.0.113.0/24"}))
    assert e.bytes >= os.path.getsize(files[0]) and e.packets > 0


# ---------------------------------------------------------------- indexed == scanned, any selection

ADDR = ["10.0.0.1", "10.0.0.2", "10.0.0.0/30", "10.0.0.0/8", "fd00::1", "fd00::/64", None]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(capture=captures(), data=st.data())
def test_an_indexed_selection_and_a_full_scan_always_agree(tmp_path, capture, data):
    linktype, records, snaplen, _ = capture
    path = Path(tmp_path) / f"pcap.{os.getpid()}"
    g.write_pcap(path, records, linktype=linktype, snaplen=snaplen)
    given = {
        "src": data.draw(st.sampled_from(ADDR)),
        "dst": data.draw(st.sampled_from(ADDR)),
        "src_port": data.draw(st.sampled_from([None, 1, 2, 80])),
        "dst_port": data.draw(st.sampled_from([None, 1, 2, 80, 8])),
        "proto": data.draw(st.sampled_from([None, None, 1, 6, 17, 132])),
    }
    start = T0 + data.draw(st.sampled_from([0, 10**5]))
    s = Selection(start, start + data.draw(st.sampled_from([10**7, 3 * 10**5])), **given)
    index_path(path).unlink(missing_ok=True)
    scanned = b"".join(query_captures([path], s))
    build_index(path)
    assert b"".join(query_captures([path], s)) == scanned


# ---------------------------------------------------------------- a few flow rows == many


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_few_flow_rows_are_confirmed_as_a_whole_table_is(data):
    """The row-by-row test of a few rows (a single host's flows) keeps exactly what the table test keeps."""
    ends = [address16(ipaddress.ip_address(a)) for a in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1")]
    count = FEW_ROWS * 3
    rows = np.zeros(count, dtype=ROW_DTYPE)
    flows = []
    for k in range(count):
        a, b = data.draw(st.sampled_from(ends)), data.draw(st.sampled_from(ends))
        a_port, b_port = data.draw(st.sampled_from([0, 1, 2, 80])), data.draw(st.sampled_from([0, 1, 80]))
        proto = data.draw(st.sampled_from([1, 6, 17, 58, 132]))
        first = T0 + data.draw(st.integers(0, 10))
        halves = [int.from_bytes(x, "big") for x in (a[:8], a[8:], b[:8], b[8:])]
        digest = community_digest(a, a_port, b, b_port, proto)
        last = first + data.draw(st.integers(0, 10))
        rows[k] = (*halves, first, last, 100, 2, a_port, b_port, proto, False, digest)
        flows.append((a, a_port, b, b_port, proto))
    cid = community_id(*data.draw(st.sampled_from(flows)))
    s = Selection(
        T0 + data.draw(st.integers(0, 12)),
        T0 + data.draw(st.integers(8, 30)),
        src=data.draw(st.sampled_from([None, "10.0.0.1", "10.0.0.0/30", "fd00::/64"])),
        dst=data.draw(st.sampled_from([None, "10.0.0.2", "10.0.0.0/8"])),
        src_port=data.draw(st.sampled_from([None, 1, 80])),
        dst_port=data.draw(st.sampled_from([None, 0, 80])),
        proto=data.draw(st.sampled_from([None, 1, 6, 17, 58])),
        community_id=data.draw(st.sampled_from([None, cid])),
    )
    m = SelectionMatcher(s)
    whole = m.flow_rows(rows).tolist()
    assert [bool(m.flow_rows(rows[k : k + 1])[0]) for k in range(count)] == whole
