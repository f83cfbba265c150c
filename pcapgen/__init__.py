"""Builders of real packet bytes and capture files, for tests, the demo and the benchmark.

Packets (return the bytes of one IP packet; IPv4 or IPv6 is chosen by the address strings;
lengths and checksums are correct, so tcpdump and tshark decode them)::

    tcp(src, sport, dst, dport, payload=b"", seq=0, flags="PA", *, ack=0, window=65535, **ip)
    udp(src, sport, dst, dport, payload=b"", **ip)
    sctp(src, sport, dst, dport, payload=b"", *, vtag=1, tsn=0, **ip)   # one DATA chunk, CRC32c
    icmp(src, dst, icmp_type, code=0, body=b"", **ip)                   # ICMP, or ICMPv6 for IPv6
    icmp_echo(src, dst, ident, seq, reply=False, payload=b"")           # echo request / reply
    icmp_error(router, packet, icmp_type=None, code=1)                  # unreachable, quoting packet
    ip(src, dst, proto, payload, **ip)                                  # any protocol number

    **ip options: ttl=64, ident=0 (IPv4 identification; IPv6 fragment-header id),
    ip_options=b"" (raw IPv4 options, padded to 4 bytes; ROUTER_ALERT is one),
    ext_headers=() (IPv6 extension headers before the transport header, outermost first:
    "hop", "routing", "dest", "fragment", or an IPv6 next-header number 0/43/60/44).

    fragment(ipv4_packet, size) -> list[bytes]   # split one IPv4 datagram into fragments whose
                                                 # payloads are `size` bytes (multiple of 8) at most

Link layers (wrap an IP packet into one frame of a link type)::

    ether(packet, vlans=(), src_mac=..., dst_mac=...)  LINKTYPE_ETHERNET (1); vlans outermost first,
                                                       each a VLAN id (802.1Q tag, TPID 0x8100) or a
                                                       (tpid, vid) pair: ether(p, vlans=[(QINQ, 200), 100])
    sll(packet, pkttype=0)                             LINKTYPE_LINUX_SLL (113)
    sll2(packet, ifindex=1, pkttype=0)                 LINKTYPE_LINUX_SLL2 (276)
    loopback(packet, linktype=LINKTYPE_NULL)           BSD null (0, host byte order family) or loop (108)
    raw(packet)                                        LINKTYPE_RAW (101), 228/229, DLT 12/14: no header
    frame(linktype, packet)                            any of the above by link type number

Capture files (records are ``(ts_ns, frame_bytes)``, timestamps integer nanoseconds since the epoch)::

    write_pcap(path, records, linktype=1, nanosecond=False, big_endian=False, snaplen=262144) -> int
    pcap_bytes(records, ...) -> bytes                  # the same file, in memory
    write_pcapng(path, interfaces, records, big_endian=False, leading_blocks=()) -> int
        interfaces: [Interface(linktype, tsresol=6, snaplen=0, name="")], tsresol being the raw
        if_tsresol byte (6 = microseconds, 9 = nanoseconds, 0x80 | n = 2**-n seconds);
        records: (interface_id, ts_ns, frame) for an Enhanced Packet Block, or
                 (None, None, frame) for a Simple Packet Block (interface 0, no timestamp).
    pcapng_bytes(interfaces, records, big_endian=False, leading_blocks=()) -> bytes
        leading_blocks: (block type, body) written between the section header and the interfaces.
    The writers truncate a frame longer than snaplen and keep its original length; a microsecond
    file keeps ``ts_ns // 1000`` (choose microsecond multiples when comparing times).

Traffic::

    mixed_flows(count, seed=0, v6_share=0.3, vlan_share=0.2, udp_share=0.25, sctp_share=0.02) -> [Flow]
    mixed_traffic(start_ns, seconds, flows, pps=1000, seed=0) -> Iterator[(ts_ns, ether frame)]
        A realistic mix in time order: each packet picks a flow (a few flows carry most packets),
        a direction and a size (ACK-sized, medium, full MTU). ``flows`` is a count or a list from
        mixed_flows(); Flow.packet(forward, payload) builds one packet of a flow.
    dns_traffic(start_ns, seconds, flows, seed=0, clients=4096, servers=16) -> Iterator[(ts_ns, frame)]
        DNS-like short flows, in time order: ``flows`` UDP flows from many clients' ephemeral ports
        to a few resolvers' port 53, 2-10 packets each (query/answer pairs, retries a few ms
        apart), Ethernet frames of about 190 bytes (UDP checksum 0: "none", valid for IPv4).

Real conversations (TCP handshake and teardown, HTTP, DNS over UDP, TLS) for the demo are in
pcapgen.sessions.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import random
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
DLT_RAW_12 = 12
DLT_RAW_14 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

DOT1Q = 0x8100
QINQ = 0x88A8
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
AF_INET = 2
AF_INET6_FREEBSD = 28  # 24 (NetBSD/OpenBSD) and 30 (Darwin) are also seen in captures

ROUTER_ALERT = b"\x94\x04\x00\x00"
EXT_HEADERS = {"hop": 0, "routing": 43, "dest": 60, "fragment": 44}

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


# ---------------------------------------------------------------- checksums


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    # The sum was of native-order words; RFC 1071 makes it byte-order independent up to a swap.
    total = int.from_bytes(total.to_bytes(2, "little" if struct.pack("=H", 1) == b"\1\0" else "big"), "big")
    return ~total & 0xFFFF


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32c (Castagnoli), the SCTP checksum."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------- IP layer


@functools.lru_cache(maxsize=65536)  # generators build many packets between few hosts
def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def _pseudo_header(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = _addr(src), _addr(dst)
    if s.version == 4:
        return s.packed + d.packed + struct.pack("!BBH", 0, proto, length)
    return s.packed + d.packed + struct.pack("!IxxxB", length, proto)


def _ipv4_header(src, dst, proto, payload_len, *, ttl, ident, ip_options, flags_frag) -> bytes:
    if len(ip_options) % 4:
        ip_options += b"\0" * (4 - len(ip_options) % 4)
    ihl = 5 + len(ip_options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + payload_len,
        ident,
        flags_frag,
        ttl,
        proto,
        0,
        _addr(src).packed,
        _addr(dst).packed,
    )
    header += ip_options
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


def _ext_header(kind: int, next_header: int, ident: int) -> bytes:
    if kind == 44:  # fragment header: offset 0, M=0 (an atomic fragment)
        return struct.pack("!BBHI", next_header, 0, 0, ident)
    if kind == 43:  # routing header type 0, no segments left
        return struct.pack("!BBBB", next_header, 0, 0, 0) + b"\0" * 4
    # hop-by-hop / destination options: one PadN option filling 8 bytes
    return struct.pack("!BB", next_header, 0) + b"\x01\x04" + b"\0" * 4


def ip(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    ip_options: bytes = b"",
    ext_headers: Sequence[str | int] = (),
) -> bytes:
    """An IPv4 or IPv6 packet carrying ``payload`` as protocol ``proto``."""
    if _addr(src).version == 4:
        header = _ipv4_header(
            src, dst, proto, len(payload), ttl=ttl, ident=ident, ip_options=ip_options, flags_frag=0x4000
        )
        return header + payload
    kinds = [EXT_HEADERS[k] if isinstance(k, str) else k for k in ext_headers]
    chain = b""
    next_header = proto
    for kind in reversed(kinds):
        chain = _ext_header(kind, next_header, ident) + chain
        next_header = kind
    body = chain + payload
    header = struct.pack("!IHBB", 6 << 28, len(body), next_header, ttl)
    return header + _addr(src).packed + _addr(dst).packed + body


_TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


def tcp(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    payload: bytes = b"",
    seq: int = 0,
    flags: str = "PA",
    *,
    ack: int = 0,
    window: int = 65535,
    **ip_args,
) -> bytes:
    """A TCP segment in an IP packet."""
    bits = 0
    for letter in flags:
        bits |= _TCP_FLAGS[letter]
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, bits, window, 0, 0
    )
    segment = header + payload
    csum = checksum(_pseudo_header(src, dst, 6, len(segment)) + segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    return ip(src, dst, 6, segment, **ip_args)


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes = b"", **ip_args) -> bytes:
    """A UDP datagram in an IP packet."""
    length = 8 + len(payload)
    datagram = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = checksum(_pseudo_header(src, dst, 17, length) + datagram) or 0xFFFF
    datagram = datagram[:6] + struct.pack("!H", csum) + datagram[8:]
    return ip(src, dst, 17, datagram, **ip_args)


def sctp(
    src: str,
    sport: int,
    dst: str,
    dport: int,
    payload: bytes = b"",
    *,
    vtag: int = 1,
    tsn: int = 0,
    **ip_args,
) -> bytes:
    """An SCTP packet with one DATA chunk carrying ``payload``."""
    chunk = struct.pack("!BBHIHHI", 0, 0x03, 16 + len(payload), tsn, 0, 0, 0) + payload
    chunk += b"\0" * (-len(chunk) % 4)
    packet = struct.pack("!HHII", sport, dport, vtag, 0) + chunk
    packet = packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]
    return ip(src, dst, 132, packet, **ip_args)


def icmp(src: str, dst: str, icmp_type: int, code: int = 0, body: bytes = b"", **ip_args) -> bytes:
    """An ICMP message (ICMPv6 when the addresses are IPv6) of ``icmp_type``/``code``; ``body`` follows the header."""
    v6 = _addr(src).version == 6
    proto = 58 if v6 else 1
    message = struct.pack("!BBH", icmp_type, code, 0) + body
    pseudo = _pseudo_header(src, dst, proto, len(message)) if v6 else b""
    csum = checksum(pseudo + message)
    message = message[:2] + struct.pack("!H", csum) + message[4:]
    return ip(src, dst, proto, message, **ip_args)


def icmp_echo(src: str, dst: str, ident: int, seq: int, reply: bool = False, payload: bytes = b"") -> bytes:
    """An echo request (or reply) with identifier and sequence number, ICMP or ICMPv6 by the addresses."""
    v6 = _addr(src).version == 6
    kind = (129 if reply else 128) if v6 else (0 if reply else 8)
    return icmp(src, dst, kind, 0, struct.pack("!HH", ident, seq) + payload)


def icmp_error(router: str, packet: bytes, icmp_type: int | None = None, code: int = 1) -> bytes:
    """An ICMP error sent by ``router`` to the sender of ``packet``, quoting its head (destination unreachable)."""
    v6 = packet[0] >> 4 == 6
    if v6:
        sender = str(ipaddress.IPv6Address(packet[8:24]))
        quoted = packet[:1232]
        return icmp(router, sender, 1 if icmp_type is None else icmp_type, code, b"\0" * 4 + quoted)
    sender = str(ipaddress.IPv4Address(packet[12:16]))
    quoted = packet[: (packet[0] & 0x0F) * 4 + 8]
    return icmp(router, sender, 3 if icmp_type is None else icmp_type, code, b"\0" * 4 + quoted)


def fragment(packet: bytes, size: int) -> list[bytes]:
    """Split an IPv4 datagram into fragments of at most ``size`` payload bytes (a multiple of 8)."""
    if size % 8 or size <= 0:
        raise ValueError("fragment size must be a positive multiple of 8")
    ihl = (packet[0] & 0x0F) * 4
    ident, ttl, proto = struct.unpack_from("!H", packet, 4)[0], packet[8], packet[9]
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    options = packet[20:ihl]
    payload = packet[ihl:]
    pieces = []
    for start in range(0, len(payload), size):
        piece = payload[start : start + size]
        more = 0x2000 if start + size < len(payload) else 0
        header = _ipv4_header(
            src,
            dst,
            proto,
            len(piece),
            ttl=ttl,
            ident=ident,
            ip_options=options if start == 0 else b"",  # options are only kept on the first fragment
            flags_frag=more | (start // 8),
        )
        pieces.append(header + piece)
    return pieces


# ---------------------------------------------------------------- link layers


def _ethertype(packet: bytes) -> int:
    return ETH_IPV4 if packet[0] >> 4 == 4 else ETH_IPV6


def ether(
    packet: bytes,
    vlans: Sequence[int | tuple[int, int]] = (),
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
) -> bytes:
    """An Ethernet II frame; ``vlans`` are tags outermost first (a VID, or a (TPID, VID) pair)."""
    tags = b""
    for tag in vlans:
        tpid, vid = (DOT1Q, tag) if isinstance(tag, int) else tag
        tags += struct.pack("!HH", tpid, vid & 0x0FFF)
    return dst_mac + src_mac + tags + struct.pack("!H", _ethertype(packet)) + packet


def sll(packet: bytes, pkttype: int = 0, addr: bytes = b"\x02\x00\x00\x00\x00\x01") -> bytes:
    """A Linux cooked (v1) frame."""
    return struct.pack("!HHH8sH", pkttype, 1, len(addr), addr, _ethertype(packet)) + packet


def sll2(
    packet: bytes, ifindex: int = 1, pkttype: int = 0, addr: bytes = b"\x02\x00\x00\x00\x00\x01"
) -> bytes:
    """A Linux cooked v2 frame."""
    return struct.pack("!HHIHBB8s", _ethertype(packet), 0, ifindex, 1, pkttype, len(addr), addr) + packet


def loopback(packet: bytes, linktype: int = LINKTYPE_NULL, af6: int = AF_INET6_FREEBSD) -> bytes:
    """A BSD loopback frame: null (0, family in host byte order, here little-endian) or loop (108)."""
    family = AF_INET if packet[0] >> 4 == 4 else af6
    return struct.pack("<I" if linktype == LINKTYPE_NULL else "!I", family) + packet


def raw(packet: bytes) -> bytes:
    """A raw IP frame: the packet itself."""
    return packet


def frame(linktype: int, packet: bytes) -> bytes:
    """Wrap ``packet`` for the link type number ``linktype``."""
    if linktype == LINKTYPE_ETHERNET:
        return ether(packet)
    if linktype == LINKTYPE_LINUX_SLL:
        return sll(packet)
    if linktype == LINKTYPE_LINUX_SLL2:
        return sll2(packet)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return loopback(packet, linktype)
    if linktype in (DLT_RAW_12, DLT_RAW_14, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return packet
    raise ValueError(f"no builder for link type {linktype}")


# ---------------------------------------------------------------- capture files


def pcap_header(
    linktype: int = 1, nanosecond: bool = False, big_endian: bool = False, snaplen: int = 262144
) -> bytes:
    """The 24-byte classic pcap file header."""
    order = ">" if big_endian else "<"
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(
    ts_ns: int, data: bytes, nanosecond: bool = False, big_endian: bool = False, snaplen: int = 262144
) -> bytes:
    """One classic pcap record (header and captured bytes)."""
    secs, frac = divmod(ts_ns, 1_000_000_000)
    if not nanosecond:
        frac //= 1000
    captured = data[:snaplen]
    order = ">" if big_endian else "<"
    return struct.pack(order + "IIII", secs, frac, len(captured), len(data)) + captured


def pcap_bytes(records: Iterable[tuple[int, bytes]], linktype: int = 1, **options) -> bytes:
    """A whole classic pcap file in memory."""
    parts = [pcap_header(linktype, **options)]
    parts += [pcap_record(ts, data, **options) for ts, data in records]
    return b"".join(parts)


def write_pcap(
    path: str | Path,
    records: Iterable[tuple[int, bytes]],
    linktype: int = 1,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> int:
    """Write a classic pcap file; returns the number of records written."""
    count = 0
    with open(path, "wb", buffering=1 << 20) as out:
        out.write(pcap_header(linktype, nanosecond, big_endian, snaplen))
        for ts, data in records:
            out.write(pcap_record(ts, data, nanosecond, big_endian, snaplen))
            count += 1
    return count


@dataclass(frozen=True)
class Interface:
    """A pcapng interface: link type, raw if_tsresol byte, snap length, name."""

    linktype: int = LINKTYPE_ETHERNET
    tsresol: int = 6
    snaplen: int = 0
    name: str = ""


def _block(order: str, kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I", length)


def _option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _ticks(ts_ns: int, tsresol: int) -> int:
    if tsresol & 0x80:
        return (ts_ns << (tsresol & 0x7F)) // 1_000_000_000
    exponent = tsresol & 0x7F
    return ts_ns * 10**exponent // 1_000_000_000


def pcapng_bytes(
    interfaces: Sequence[Interface | int],
    records: Iterable[tuple[int | None, int | None, bytes]],
    big_endian: bool = False,
    leading_blocks: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """A whole pcapng file (one section) in memory; ``leading_blocks`` (type, body) come before the interfaces."""
    order = ">" if big_endian else "<"
    ifaces = [i if isinstance(i, Interface) else Interface(i) for i in interfaces]
    parts = [_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    parts += [_block(order, kind, body) for kind, body in leading_blocks]
    for iface in ifaces:
        options = b""
        if iface.name:
            options += _option(order, 2, iface.name.encode())
        if iface.tsresol != 6:
            options += _option(order, 9, bytes([iface.tsresol]))
        if options:
            options += _option(order, 0, b"")
        parts.append(_block(order, 1, struct.pack(order + "HHI", iface.linktype, 0, iface.snaplen) + options))
    for if_id, ts_ns, data in records:
        if if_id is None:
            snap = ifaces[0].snaplen or len(data)
            parts.append(_block(order, 3, struct.pack(order + "I", len(data)) + data[:snap]))
            continue
        if ts_ns is None:
            raise ValueError("an enhanced packet block needs a timestamp")
        ticks = _ticks(ts_ns, ifaces[if_id].tsresol)
        captured = data[: ifaces[if_id].snaplen or len(data)]
        head = struct.pack(order + "IIIII", if_id, ticks >> 32, ticks & 0xFFFFFFFF, len(captured), len(data))
        parts.append(_block(order, 6, head + captured))
    return b"".join(parts)


def write_pcapng(
    path: str | Path,
    interfaces: Sequence[Interface | int],
    records: Iterable[tuple[int | None, int | None, bytes]],
    big_endian: bool = False,
    leading_blocks: Sequence[tuple[int, bytes]] = (),
) -> int:
    """Write a pcapng file; returns its size in bytes."""
    data = pcapng_bytes(interfaces, records, big_endian, leading_blocks)
    Path(path).write_bytes(data)
    return len(data)


# ---------------------------------------------------------------- traffic


@dataclass(frozen=True)
class Flow:
    """A bidirectional flow of the generated mix: ``a:a_port <-> b:b_port`` over ``proto``."""

    proto: int
    a: str
    a_port: int
    b: str
    b_port: int
    vlans: tuple = ()

    def packet(self, forward: bool = True, payload: bytes = b"", seq: int = 0) -> bytes:
        """One IP packet of this flow, a->b when ``forward``."""
        src, sport, dst, dport = (
            (self.a, self.a_port, self.b, self.b_port)
            if forward
            else (self.b, self.b_port, self.a, self.a_port)
        )
        if self.proto == 6:
            return tcp(src, sport, dst, dport, payload, seq=seq, flags="PA" if payload else "A")
        if self.proto == 17:
            return udp(src, sport, dst, dport, payload)
        return sctp(src, sport, dst, dport, payload, tsn=seq)

    def frame(self, forward: bool = True, payload: bytes = b"", seq: int = 0) -> bytes:
        """One Ethernet frame of this flow (with its VLAN tags)."""
        return ether(self.packet(forward, payload, seq), vlans=self.vlans)


def mixed_flows(
    count: int,
    seed: int = 0,
    v6_share: float = 0.3,
    vlan_share: float = 0.2,
    udp_share: float = 0.25,
    sctp_share: float = 0.02,
) -> list[Flow]:
    """``count`` distinct flows: clients in 10/8 or fd00::/64 to a few hundred servers, some VLAN-tagged."""
    rng = random.Random(seed)
    flows: list[Flow] = []
    seen: set[tuple] = set()
    while len(flows) < count:
        v6 = rng.random() < v6_share
        if v6:
            a = f"fd00::{rng.randrange(1, 0xFFFF):x}:{rng.randrange(1, 0xFFFF):x}"
            b = f"2001:db8::{rng.randrange(1, 300):x}"
        else:
            a = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            b = (
                f"192.0.2.{rng.randrange(1, 255)}"
                if rng.random() < 0.5
                else f"198.51.100.{rng.randrange(1, 255)}"
            )
        roll = rng.random()
        proto = 132 if roll < sctp_share else 17 if roll < sctp_share + udp_share else 6
        b_port = rng.choice((53, 80, 123, 443, 443, 443, 8080, 3868, 5060)) if proto != 132 else 2905
        a_port = rng.randrange(1024, 65536)
        vlans: tuple = ()
        if rng.random() < vlan_share:
            vlans = (
                ((QINQ, rng.randrange(1, 4095)), rng.randrange(1, 4095))
                if rng.random() < 0.3
                else (rng.randrange(1, 4095),)
            )
        key = (proto, a, a_port, b, b_port)
        if key not in seen:
            seen.add(key)
            flows.append(Flow(proto, a, a_port, b, b_port, vlans))
    return flows


_SIZES = (0, 0, 0, 0, 120, 300, 600, 1400, 1400, 1400)  # payload bytes: many ACKs, many full segments


def mixed_traffic(
    start_ns: int,
    seconds: float,
    flows: int | Sequence[Flow],
    pps: int = 1000,
    seed: int = 0,
) -> Iterator[tuple[int, bytes]]:
    """Ethernet frames of ``flows`` at about ``pps`` packets per second, in time order."""
    rng = random.Random(seed)
    flow_list = mixed_flows(flows, seed) if isinstance(flows, int) else list(flows)
    # A few flows carry most of the packets, as on a real link (Zipf-like weights).
    weights = [1.0 / (rank + 1) for rank in range(len(flow_list))]
    rng.shuffle(weights)
    cumulative = list(itertools.accumulate(weights))
    blob = rng.randbytes(1500)
    seqs = [0] * len(flow_list)
    step = 1_000_000_000 / pps
    for n in range(int(seconds * pps)):
        if n % 4096 == 0:
            batch = rng.choices(range(len(flow_list)), cum_weights=cumulative, k=4096)
        index = batch[n % 4096]
        flow = flow_list[index]
        size = rng.choice(_SIZES) if flow.proto == 6 else rng.choice((40, 80, 200, 500))
        seqs[index] += size
        # Jitter inside the packet's own time slot keeps the stream in time order.
        ts = start_ns + int(n * step) + rng.randrange(max(1, int(step)))
        yield ts - ts % 1000, flow.frame(rng.random() < 0.5, blob[:size], seqs[index])


def dns_traffic(
    start_ns: int, seconds: float, flows: int, seed: int = 0, clients: int = 4096, servers: int = 16
) -> Iterator[tuple[int, bytes]]:
    """DNS-like short flows (see the module docstring), built field by field for speed."""
    rng = random.Random(seed)
    client_ips = [bytes((10, 1 + n // 65536 % 250, n // 256 % 256, n % 256)) for n in range(1, clients + 1)]
    server_ips = [bytes((192, 0, 2, 1 + n % 250)) for n in range(servers)]
    span = int(seconds * 1_000_000_000)
    packets = []
    for flow in range(flows):
        at = start_ns + rng.randrange(max(1, span - 50_000_000))
        for k in range(rng.randrange(1, 6) * 2):  # query/answer pairs
            packets.append((at, flow, k))
            at += rng.randrange(200_000, 8_000_000)  # 0.2-8 ms apart
    packets.sort()
    ends = [
        (rng.choice(client_ips), rng.randrange(1024, 65536), rng.choice(server_ips)) for _ in range(flows)
    ]
    blob = rng.randbytes(300)
    ether = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    pack_ip, pack_udp = struct.Struct("!BBHHHBBH4s4s").pack, struct.Struct("!HHHH").pack
    unpack_words = struct.Struct("!10H").unpack
    for ts, flow, k in packets:
        client, port, server = ends[flow]
        size = rng.randrange(60, 100) if k % 2 == 0 else rng.randrange(180, 260)
        src, dst, sport, dport = (client, server, port, 53) if k % 2 == 0 else (server, client, 53, port)
        head = pack_ip(0x45, 0, 28 + size, flow & 0xFFFF, 0, 64, 17, 0, src, dst)
        total = sum(unpack_words(head))
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        head = head[:10] + (~total & 0xFFFF).to_bytes(2, "big") + head[12:]
        yield ts - ts % 1000, ether + head + pack_udp(sport, dport, 8 + size, 0) + blob[:size]
