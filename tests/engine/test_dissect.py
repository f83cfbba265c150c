"""Flow fields of one frame, for every link type and header the engine reads.

Each case is checked twice: by the per-packet dissector, and by the vectorised index build on a
capture holding the frame (both must find the same flow, or none).
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pytest

import pcapgen as g
from engine.dissection.packet import dissect
from engine.index import FlowIndex, build_index, index_path
from tests.engine.conftest import T0

V4 = ("10.1.2.3", 40000, "192.0.2.9", 443)
V6 = ("2001:db8::1", 40000, "2001:db8::99", 443)


def a16(text: str) -> bytes:
    address = ipaddress.ip_address(text)
    return (b"\0" * 10 + b"\xff\xff" + address.packed) if address.version == 4 else address.packed


def fields(src, sport, dst, dport, proto=6):
    return (a16(src), a16(dst), proto, sport, dport)


def v4tcp(**ip):
    return g.tcp(*V4, b"data", **ip)


def v6tcp(**ip):
    return g.tcp(*V6, b"data", **ip)


NULL_BE = struct.pack(">I", 2) + v4tcp()  # written by a big-endian host
ARP = bytes(12) + b"\x08\x06" + bytes(28)

CASES = [
    # name, link type, frame, expected (src, dst, proto, sport, dport) or None
    ("ethernet ipv4 tcp", 1, g.ether(v4tcp()), fields(*V4)),
    ("ethernet ipv6 tcp", 1, g.ether(v6tcp()), fields(*V6)),
    ("ethernet udp", 1, g.ether(g.udp(*V4, b"q")), fields(*V4, proto=17)),
    ("ethernet sctp", 1, g.ether(g.sctp(*V4, b"q")), fields(*V4, proto=132)),
    ("802.1Q", 1, g.ether(v4tcp(), vlans=[100]), fields(*V4)),
    ("802.1ad", 1, g.ether(v4tcp(), vlans=[(g.QINQ, 100)]), fields(*V4)),
    ("stacked 802.1ad+802.1Q", 1, g.ether(v6tcp(), vlans=[(g.QINQ, 200), 100]), fields(*V6)),
    ("three tags", 1, g.ether(v4tcp(), vlans=[(g.QINQ, 1), 2, 3]), fields(*V4)),
    ("five tags", 1, g.ether(v4tcp(), vlans=[(g.QINQ, 1), 2, 3, 4, 5]), fields(*V4)),
    ("ipv4 options", 1, g.ether(v4tcp(ip_options=g.ROUTER_ALERT * 10)), fields(*V4)),
    (
        "ipv4 options in vlans",
        1,
        g.ether(v4tcp(ip_options=g.ROUTER_ALERT * 10), vlans=[1, 2, 3]),
        fields(*V4),
    ),
    ("hop-by-hop", 1, g.ether(v6tcp(ext_headers=["hop"])), fields(*V6)),
    ("routing", 1, g.ether(v6tcp(ext_headers=["routing"])), fields(*V6)),
    ("destination options", 1, g.ether(v6tcp(ext_headers=["dest"])), fields(*V6)),
    ("atomic fragment", 1, g.ether(v6tcp(ext_headers=["fragment"])), fields(*V6)),
    (
        "all extensions",
        1,
        g.ether(v6tcp(ext_headers=["hop", "routing", "dest", "fragment", "dest"])),
        fields(*V6),
    ),
    (
        "icmp has ports 0",
        1,
        g.ether(g.ip("10.1.2.3", "192.0.2.9", 1, b"\x08\0\0\0")),
        fields(V4[0], 0, V4[2], 0, 1),
    ),
    ("arp", 1, ARP, None),
    ("runt", 1, b"\x02" * 10, None),
    ("ports cut off", 1, g.ether(v4tcp())[: 14 + 20 + 2], None),
    ("ipv6 cut off", 1, g.ether(v6tcp())[: 14 + 30], None),
    ("bad ip version", 1, g.ether(b"\x75" + v4tcp()[1:]), None),
    ("linux cooked v1", 113, g.sll(v4tcp()), fields(*V4)),
    ("linux cooked v1 ipv6", 113, g.sll(v6tcp()), fields(*V6)),
    ("linux cooked v2", 276, g.sll2(v6tcp()), fields(*V6)),
    ("linux cooked v2 ipv4", 276, g.sll2(v4tcp()), fields(*V4)),
    ("raw 101 ipv4", 101, v4tcp(), fields(*V4)),
    ("raw 101 ipv6", 101, v6tcp(), fields(*V6)),
    ("raw 12", 12, v6tcp(), fields(*V6)),
    ("raw 14", 14, v4tcp(), fields(*V4)),
    ("ipv4 228", 228, v4tcp(), fields(*V4)),
    ("ipv6 229", 229, v6tcp(), fields(*V6)),
    ("ipv6 in 228", 228, v6tcp(), None),
    ("null little-endian", 0, g.loopback(v4tcp()), fields(*V4)),
    ("null ipv6 freebsd", 0, g.loopback(v6tcp(), af6=28), fields(*V6)),
    ("null ipv6 darwin", 0, g.loopback(v6tcp(), af6=30), fields(*V6)),
    ("null ipv6 openbsd", 0, g.loopback(v6tcp(), af6=24), fields(*V6)),
    ("null big-endian", 0, NULL_BE, fields(*V4)),
    ("loop", 108, g.loopback(v6tcp(), g.LINKTYPE_LOOP), fields(*V6)),
    ("unknown link type", 147, v4tcp(), None),
]


@pytest.mark.parametrize(("name", "linktype", "frame", "expected"), CASES, ids=[c[0] for c in CASES])
def test_the_dissector_finds_the_flow_fields(name, linktype, frame, expected):
    found = dissect(linktype, frame)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.src, found.dst, found.proto, found.sport, found.dport) == expected
        assert not found.later_fragment


def folded(src, dst, proto, sport, dport):
    if (dst, dport) < (src, sport):
        src, sport, dst, dport = dst, dport, src, sport
    return (src, sport, dst, dport, proto)


def index_flows(index: FlowIndex) -> set[tuple]:
    out = set()
    for row in index.flows:
        a = int(row["a_hi"]).to_bytes(8, "big") + int(row["a_lo"]).to_bytes(8, "big")
        b = int(row["b_hi"]).to_bytes(8, "big") + int(row["b_lo"]).to_bytes(8, "big")
        out.add((a, int(row["a_port"]), b, int(row["b_port"]), int(row["proto"])))
    return out


@pytest.mark.parametrize(("name", "linktype", "frame", "expected"), CASES, ids=[c[0] for c in CASES])
def test_the_index_build_finds_the_same_fields(tmp_path, name, linktype, frame, expected):
    path = tmp_path / "one.pcap"
    # the frame between two others, so the vectorised path cannot lean on the end of the file
    filler_packet = g.udp(
        "10.250.0.1" if linktype != 229 else "fd00::1", 9, "10.250.0.2" if linktype != 229 else "fd00::2", 9
    )
    filler = g.frame(linktype, filler_packet) if linktype != 147 else filler_packet
    g.write_pcap(path, [(T0, filler), (T0 + 1000, frame), (T0 + 2000, filler)], linktype=linktype)
    build_index(path)
    flows = index_flows(FlowIndex(index_path(path)))
    others = {f for f in flows if f[1] != 40000 and f[3] != 40000 and f[4] != 1}
    mine = flows - others
    assert mine == (set() if expected is None else {folded(*expected)})


FIRST, SECOND, THIRD = g.fragment(g.udp("10.0.0.1", 5000, "10.0.0.2", 53, b"A" * 100, ident=77), 48)


def test_fragments_the_first_carries_the_ports_the_later_ones_the_key():
    first = dissect(101, FIRST)
    later = dissect(101, SECOND)
    assert (first.sport, first.dport, first.later_fragment) == (5000, 53, False)
    assert later.later_fragment and (later.sport, later.dport) == (0, 0)
    assert first.frag_key == later.frag_key == (a16("10.0.0.1"), a16("10.0.0.2"), 17, 77)


def test_an_unfragmented_packet_has_no_fragment_key():
    assert dissect(101, v4tcp()).frag_key is None


def test_the_index_puts_later_fragments_in_their_first_fragments_flow(tmp_path):
    path = tmp_path / "frag.pcap"
    other = g.fragment(g.udp("10.0.0.1", 6000, "10.0.0.2", 53, b"B" * 100, ident=78), 48)
    orphan = g.fragment(g.udp("10.0.0.1", 7000, "10.0.0.2", 53, b"C" * 100, ident=79), 48)[1]
    frames = [FIRST, other[0], SECOND, other[1], orphan, THIRD, other[2]]
    g.write_pcap(path, [(T0 + i * 1000, f) for i, f in enumerate(frames)], linktype=101)
    build_index(path)
    index = FlowIndex(index_path(path))
    packets = {(int(r["a_port"]), int(r["b_port"])): int(r["packets"]) for r in index.flows}
    assert packets == {(5000, 53): 3, (6000, 53): 3}  # the orphan has no first fragment in the file
    flow_id = index.find(a16("10.0.0.1"), 5000, a16("10.0.0.2"), 53)
    offsets = index.packet_offsets(flow_id)
    assert np.all(np.diff(offsets) > 0) and len(offsets) == 3
