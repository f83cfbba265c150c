"""Which packets and flows a Selection takes: the per-packet test of a scan, the per-flow test of an index.

Both apply the rules of ``engine.selection.selectors.Selection`` (either end in either order; a port without a
protocol means TCP, UDP or SCTP) and the same Community ID (``engine.dissection.communityid``), so an
indexed file and a scanned one give the same answer.

ICMP and ICMPv6 carry no ports; the dissector gives their packets ports 0, so all ICMP between
two hosts is one flow of the flow table. A Community ID of ICMP, or a port asked of an ICMP flow,
is decided per packet from the message's type and code (Community ID's port equivalents: type,
and the reply's type or the code). An ICMP error quoting a TCP or UDP header is ICMP: it belongs
to no TCP or UDP flow, whatever it quotes (the dissector reads the ICMP header, not the quote).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..dissection import packet as d
from ..dissection.communityid import community_digest, flow_ports, parse_community_id
from ..dissection.packet import ICMP_PROTOCOLS, PROTO_ICMP, PROTO_ICMPV6
from .selectors import Selection


def is_icmp(protocols: np.ndarray) -> np.ndarray:
    """Which protocol numbers are ICMP or ICMPv6 (``np.isin``'s answer, at a fraction of its cost)."""
    return (protocols == PROTO_ICMP) | (protocols == PROTO_ICMPV6)


# Records' flow fields laid out as flow-table rows, for ``SelectionMatcher.flow_rows``.
RECORD_ROWS = np.dtype(
    [
        ("a_hi", "u8"),
        ("a_lo", "u8"),
        ("b_hi", "u8"),
        ("b_lo", "u8"),
        ("a_port", "u2"),
        ("b_port", "u2"),
        ("proto", "u1"),
        ("first_ns", "i8"),
        ("last_ns", "i8"),
    ]
)


def icmp_type_code(linktype: int, data: bytes) -> tuple[int, int] | None:
    """(type, code) of the ICMP or ICMPv6 message in a frame (not a later fragment); None without one."""
    start = d.network_start(linktype, data)
    if start is None:
        return None
    at, version = start
    if version == 4:
        if len(data) < at + 20 or data[at + 9] != PROTO_ICMP:
            return None
        at += (data[at] & 0x0F) * 4
    else:
        if len(data) < at + 40:
            return None
        proto, at = data[at + 6], at + 40
        while proto != PROTO_ICMPV6:
            if proto in d.IPV6_EXTENSIONS or proto == d.IPV6_FRAGMENT:
                if len(data) < at + 8:
                    return None
                proto, at = data[at], at + (8 if proto == d.IPV6_FRAGMENT else (data[at + 1] + 1) * 8)
            elif proto == d.IPV6_AH:
                if len(data) < at + 2:
                    return None
                proto, at = data[at], at + (data[at + 1] + 2) * 4
            else:
                return None
    if len(data) < at + 2:
        return None
    return data[at], data[at + 1]


class SelectionMatcher:
    """Decides whether a dissected packet, or a flow of an index's flow table, belongs to a Selection."""

    def __init__(self, selection: Selection):
        self.selection = selection
        self.start_ns, self.end_ns = selection.start_ns, selection.end_ns
        self.protocols = selection.protocols
        self.digest = None if selection.community_id is None else parse_community_id(selection.community_id)
        # ICMP ports are only known from the packet: needed when ports or a Community ID are asked.
        icmp_ports = selection.proto in ICMP_PROTOCOLS and (selection.src_port, selection.dst_port) != (
            None,
            None,
        )
        self._icmp_per_packet = self.digest is not None or icmp_ports
        # Each end's selectors as (first address, last address, port) with addresses as integers.
        self._ends = tuple(
            (
                0 if bounds is None else int.from_bytes(bounds[0], "big"),
                (1 << 128) - 1 if bounds is None else int.from_bytes(bounds[1], "big"),
                port,
            )
            for bounds, port in (
                (selection.src_range, selection.src_port),
                (selection.dst_range, selection.dst_port),
            )
        )
        # What an index may look up: ICMP ports are 0 in its table, so they are not looked up.
        self.lookup = (
            dataclasses.replace(selection, src_port=None, dst_port=None) if icmp_ports else selection
        )

    def __eq__(self, other: object) -> bool:
        # Everything a matcher decides follows from its selection: equal selections, equal matchers.
        return type(other) is SelectionMatcher and other.selection == self.selection

    def __hash__(self) -> int:
        return hash(self.selection)

    # ------------------------------------------------------------ packets

    def flow(self, f: d.FlowFields, linktype: int | None = None, data: bytes | None = None) -> bool:
        """True when ``f`` (not a later fragment) is a packet of a selected flow; ``data`` is its frame."""
        s = self.selection
        sport, dport = f.sport, f.dport
        if f.proto in ICMP_PROTOCOLS and self._icmp_per_packet:
            found = None if data is None or linktype is None else icmp_type_code(linktype, data)
            if found is None:
                return False
            sport, dport, _ = flow_ports(f.proto, *found)
            if (
                self.digest is not None
                and community_digest(f.src, found[0], f.dst, found[1], f.proto) != self.digest
            ):
                return False
            return s.matches(f.src, sport, f.dst, dport, f.proto)
        if self.digest is not None and community_digest(f.src, sport, f.dst, dport, f.proto) != self.digest:
            return False
        return s.matches(f.src, sport, f.dst, dport, f.proto)

    def endpoints(self, f: d.FlowFields) -> bool:
        """True when ``f`` travels between addresses a selected flow can have (all a later fragment shows)."""
        protocols = self.protocols
        if protocols is not None and f.proto not in protocols:
            return False
        return self.selection.endpoints_match(f.src, f.dst)

    def needles(self) -> tuple[bytes, ...]:
        """Bytes every matching frame contains (single-host addresses asked), for a cheap first test in a scan."""
        found = []
        for network in (self.selection.src, self.selection.dst):
            if network is not None and network.num_addresses == 1:
                found.append(network.network_address.packed)
        return tuple(found)

    def columns_match(self, c) -> np.ndarray | None:
        """``flow`` over many records' fields at once (``engine.dissection.fields.FlowColumns``); None when
        the selection is decided per packet (a Community ID, ICMP type or code)."""
        if self.digest is not None or self._icmp_per_packet:
            return None
        n = len(c.has_flow)
        rows = np.zeros(n, dtype=RECORD_ROWS)
        rows["a_hi"], rows["a_lo"], rows["a_port"] = c.src_hi, c.src_lo, c.sport
        rows["b_hi"], rows["b_lo"], rows["b_port"] = c.dst_hi, c.dst_lo, c.dport
        rows["proto"] = c.proto
        rows["first_ns"], rows["last_ns"] = self.start_ns, self.end_ns  # times are the caller's test
        return c.has_flow & self.flow_rows(rows)

    # ------------------------------------------------------------ flow tables

    def flow_rows(self, flows: np.ndarray) -> np.ndarray:
        """A boolean mask of the flow-table rows that may hold selected packets in the window.

        Exact for every selector but those decided per packet (ICMP type/code): such rows are kept
        as candidates, and their packets are checked one by one.
        """
        if len(flows) <= FEW_ROWS and flows.dtype.names == ROW_FIELDS:
            return np.fromiter(map(self._row_kept, flows.tolist()), dtype=bool, count=len(flows))
        s = self.selection
        keep = (flows["last_ns"] >= s.start_ns) & (flows["first_ns"] <= s.end_ns)
        proto = flows["proto"]
        if self.protocols is not None:
            keep &= np.isin(proto, self.protocols)
        per_packet = np.isin(proto, ICMP_PROTOCOLS) if self._icmp_per_packet else np.zeros(len(flows), bool)
        a_src, a_dst = _end(flows, "a", s, 0), _end(flows, "a", s, 1)
        b_src, b_dst = _end(flows, "b", s, 0), _end(flows, "b", s, 1)
        if self._icmp_per_packet:
            # ports of ICMP rows are 0 in the table: only the addresses can be tested here
            a_src |= per_packet & _end(flows, "a", s, 0, ports=False)
            a_dst |= per_packet & _end(flows, "a", s, 1, ports=False)
            b_src |= per_packet & _end(flows, "b", s, 0, ports=False)
            b_dst |= per_packet & _end(flows, "b", s, 1, ports=False)
        keep &= (a_src & b_dst) | (b_src & a_dst)
        if self.digest is not None:
            wanted = np.frombuffer(self.digest, dtype="V20")[0]
            keep &= per_packet | (flows["community_id"] == wanted)
        return keep

    def _row_kept(self, row: tuple) -> bool:
        """``flow_rows`` for one row (``ROW_DTYPE`` as a tuple): the same rules, in plain Python."""
        a_hi, a_lo, b_hi, b_lo, first_ns, last_ns, _, _, a_port, b_port, proto, _, community_id = row
        s = self.selection
        if last_ns < s.start_ns or first_ns > s.end_ns:
            return False
        if self.protocols is not None and proto not in self.protocols:
            return False
        per_packet = self._icmp_per_packet and proto in ICMP_PROTOCOLS
        a, b = (a_hi << 64) | a_lo, (b_hi << 64) | b_lo
        ends = self._ends
        a_src, a_dst = _end_kept(ends[0], a, a_port, per_packet), _end_kept(ends[1], a, a_port, per_packet)
        b_src, b_dst = _end_kept(ends[0], b, b_port, per_packet), _end_kept(ends[1], b, b_port, per_packet)
        if not ((a_src and b_dst) or (b_src and a_dst)):
            return False
        return self.digest is None or per_packet or community_id == self.digest


# The fields of a flow-table row as an index gives it (``engine.index.lookup.ROW_DTYPE``), in order.
ROW_FIELDS = (
    "a_hi",
    "a_lo",
    "b_hi",
    "b_lo",
    "first_ns",
    "last_ns",
    "bytes",
    "packets",
    "a_port",
    "b_port",
    "proto",
    "b_first",
    "community_id",
)
# Up to this many flow-table rows are confirmed row by row in Python: numpy's cost per call is
# more than Python's per row for a handful of rows (a single host's flows in a file).
FEW_ROWS = 16


def _end_kept(end: tuple[int, int, int | None], address: int, port: int, per_packet: bool) -> bool:
    """``_end`` for one row: ``end`` is (first, last, port) of the src or dst selectors as integers."""
    first, last, wanted = end
    if not first <= address <= last:
        return False
    return per_packet or wanted is None or wanted == port


def _halves(address: bytes) -> tuple[np.uint64, np.uint64]:
    return np.uint64(int.from_bytes(address[:8], "big")), np.uint64(int.from_bytes(address[8:], "big"))


def _end(flows: np.ndarray, side: str, s: Selection, which: int, *, ports: bool = True) -> np.ndarray:
    """Rows whose ``side`` end satisfies the src (0) or dst (1) selectors."""
    keep = np.ones(len(flows), dtype=bool)
    bounds = s.src_range if which == 0 else s.dst_range
    if bounds is not None:
        hi, lo = flows[side + "_hi"], flows[side + "_lo"]
        (first_hi, first_lo), (last_hi, last_lo) = _halves(bounds[0]), _halves(bounds[1])
        keep &= (hi > first_hi) | ((hi == first_hi) & (lo >= first_lo))
        keep &= (hi < last_hi) | ((hi == last_hi) & (lo <= last_lo))
    port = s.src_port if which == 0 else s.dst_port
    if ports and port is not None:
        keep &= flows[side + "_port"] == port
    return keep
