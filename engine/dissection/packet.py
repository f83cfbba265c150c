"""Link layer -> IP -> ports: the flow fields of one frame.

This is the per-packet reference the scan path and the tests use; ``engine.dissection.fields`` computes
the same fields for whole files at once with numpy and falls back to this module for rare packets.

Rules both share:
- addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (``::ffff:a.b.c.d``);
- TCP, UDP and SCTP carry ports (a packet too short to hold them has no flow fields); other IP
  protocols get ports 0;
- the fragment rule, which the index build (``engine.dissection.fields.fill_slow_rows``) and the scan
  (``engine.query.per_record.scanned_records``) both apply: an IPv4 datagram in fragments (MF set or
  offset > 0), or an IPv6 packet with a fragment header, has ``frag_key`` set, its reassembly
  key: (src, dst, protocol, identification) for IPv4, (src, dst, -1, identification) for IPv6; a
  non-first fragment (``later_fragment``) has no ports: it belongs to the flow of a first
  fragment with the same key in the same file, the latest one before it or, when there is none
  before it (fragments sent or delivered last first), the earliest one after it; with no first
  fragment in the file it belongs to no flow. The nearest earlier one wins over a nearer later one
  when an identification is reused: it is the one a stream can know.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
RAW_LINKTYPES = (12, 14, LINKTYPE_RAW)  # DLT_RAW is 12 or 14 on some BSDs, 101 in files

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
AF_INET = 2
AF_INET6 = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
ICMP_PROTOCOLS = (PROTO_ICMP, PROTO_ICMPV6)  # their Community ID needs each packet's type and code
# Protocols whose packets carry ports, matched when a query names a port and no protocol.
PORT_PROTOCOLS = (PROTO_TCP, PROTO_UDP, PROTO_SCTP)
IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options: (len + 1) * 8 bytes
IPV6_FRAGMENT = 44
IPV6_AH = 51  # authentication header: (len + 2) * 4 bytes
V4_PREFIX = b"\0" * 10 + b"\xff\xff"


class FlowFields(NamedTuple):
    src: bytes  # 16 bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    frag_key: tuple[bytes, bytes, int, int] | None = None  # reassembly key of a fragment
    later_fragment: bool = False  # a fragment after the first: no ports


def _family_version(family: int) -> int:
    return 4 if family == AF_INET else 6 if family in AF_INET6 else 0


def network_start(linktype: int, data: bytes) -> tuple[int, int] | None:
    """(offset of the IP header, IP version) in a frame of ``linktype``; None when it holds no IP."""
    if linktype == LINKTYPE_ETHERNET:
        offset, ethertype = 14, None
        if len(data) >= 14:
            ethertype = int.from_bytes(data[12:14], "big")
        while ethertype in VLAN_TPIDS and len(data) >= offset + 4:
            ethertype = int.from_bytes(data[offset + 2 : offset + 4], "big")
            offset += 4
        return _ethertype_start(ethertype, offset)
    if linktype == LINKTYPE_LINUX_SLL:
        return _ethertype_start(int.from_bytes(data[14:16], "big") if len(data) >= 16 else None, 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ethertype_start(int.from_bytes(data[0:2], "big") if len(data) >= 20 else None, 20)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        family = int.from_bytes(data[:4], "big" if linktype == LINKTYPE_LOOP else "little")
        if linktype == LINKTYPE_NULL and family > 0xFFFF:
            family = int.from_bytes(data[:4], "big")  # written by a big-endian host
        version = _family_version(family)
        return (4, version) if version else None
    if linktype in RAW_LINKTYPES and data:
        version = data[0] >> 4
        return (0, version) if version in (4, 6) else None
    if linktype == LINKTYPE_IPV4:
        return (0, 4)
    if linktype == LINKTYPE_IPV6:
        return (0, 6)
    return None


def _ethertype_start(ethertype: int | None, offset: int) -> tuple[int, int] | None:
    if ethertype == ETH_IPV4:
        return offset, 4
    if ethertype == ETH_IPV6:
        return offset, 6
    return None


def dissect(linktype: int, data: bytes) -> FlowFields | None:
    """The flow fields of one frame, or None when it carries no IP flow we can read."""
    start = network_start(linktype, data)
    if start is None:
        return None
    offset, version = start
    if version == 4:
        return dissect_ipv4(data, offset)
    return dissect_ipv6(data, offset)


def _ports(data: bytes, offset: int, proto: int) -> tuple[int, int] | None:
    if proto not in PORT_PROTOCOLS:
        return 0, 0
    if len(data) < offset + 4:
        return None
    return struct.unpack_from("!HH", data, offset)


def dissect_ipv4(data: bytes, offset: int) -> FlowFields | None:
    """Flow fields of the IPv4 packet at ``offset``."""
    if len(data) < offset + 20 or data[offset] >> 4 != 4:
        return None
    ihl = (data[offset] & 0x0F) * 4
    if ihl < 20:
        return None
    ident, frag = struct.unpack_from("!HH", data, offset + 4)
    proto = data[offset + 9]
    src = V4_PREFIX + data[offset + 12 : offset + 16]
    dst = V4_PREFIX + data[offset + 16 : offset + 20]
    fragmented = bool(frag & 0x3FFF)  # MF or a fragment offset
    key = (src, dst, proto, ident) if fragmented else None
    if frag & 0x1FFF:
        return FlowFields(src, dst, proto, 0, 0, key, True)
    ports = _ports(data, offset + ihl, proto)
    if ports is None:
        return None
    return FlowFields(src, dst, proto, ports[0], ports[1], key, False)


def dissect_ipv6(data: bytes, offset: int) -> FlowFields | None:
    """Flow fields of the IPv6 packet at ``offset``, walking its extension headers."""
    if len(data) < offset + 40 or data[offset] >> 4 != 6:
        return None
    src = data[offset + 8 : offset + 24]
    dst = data[offset + 24 : offset + 40]
    proto = data[offset + 6]
    at = offset + 40
    key = None
    while True:
        if proto in IPV6_EXTENSIONS:
            if len(data) < at + 2:
                return None
            proto, at = data[at], at + (data[at + 1] + 1) * 8
        elif proto == IPV6_AH:
            if len(data) < at + 2:
                return None
            proto, at = data[at], at + (data[at + 1] + 2) * 4
        elif proto == IPV6_FRAGMENT:
            if len(data) < at + 8:
                return None
            proto = data[at]
            frag, ident = struct.unpack_from("!HI", data, at + 2)
            key = (src, dst, -1, ident)
            at += 8
            if frag & 0xFFF8:
                return FlowFields(src, dst, proto, 0, 0, key, True)
        else:
            break
    ports = _ports(data, at, proto)
    if ports is None:
        return None
    return FlowFields(src, dst, proto, ports[0], ports[1], key, False)
