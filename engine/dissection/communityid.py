"""Community ID v1 (seed 0) of a flow, as Zeek, Suricata and Arkime compute it.

The spec (github.com/corelight/community-id-spec): sha1 over

    seed u16 | src address | dst address | protocol u8 | 0 u8 | src port u16 | dst port u16

(network byte order; addresses 4 bytes for IPv4, 16 for IPv6; the two ports only for TCP, UDP,
SCTP, ICMP and ICMPv6), rendered ``"1:" + base64(digest)``. The endpoints are ordered so both
directions hash alike: the smaller address first, or with equal addresses the smaller port.

ICMP and ICMPv6 have no ports: the message type stands for the source port and, for a type with
a request/reply counterpart (echo, timestamp, information, address mask, router solicitation/
advertisement; for ICMPv6 also MLD query/report, neighbour solicitation/advertisement, who-are-you,
home agent discovery), the counterpart type for the destination port, so a request and its reply
are one flow. Any other type keeps its code as the destination port and is one-way: it is hashed
as sent, never reordered (Zeek's mapping, which the reference implementation mirrors).

Addresses are taken as the engine holds them, 16 bytes with IPv4 as ``::ffff:a.b.c.d``
(``engine.selection.selectors.address16``); a flow between two such addresses is hashed as IPv4.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import operator
import struct

import numpy as np

from .packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, V4_PREFIX

# Protocols whose ports (or ICMP port equivalents) are part of the hashed message.
HASHED_PORT_PROTOCOLS = (PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, PROTO_SCTP)

ICMP_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMPV6_COUNTERPART = {
    128: 129,  # echo request / reply
    129: 128,
    130: 131,  # MLD listener query / report
    131: 130,
    133: 134,  # router solicitation / advertisement
    134: 133,
    135: 136,  # neighbour solicitation / advertisement
    136: 135,
    139: 140,  # who-are-you request / reply
    140: 139,
    144: 145,  # home agent address discovery request / reply
    145: 144,
}
_COUNTERPARTS = {PROTO_ICMP: ICMP_COUNTERPART, PROTO_ICMPV6: ICMPV6_COUNTERPART}
DIGEST_SIZE = 20
TEXT_PREFIX = "1:"
_DIGEST = operator.methodcaller("digest")


def icmp_ports(proto: int, icmp_type: int, icmp_code: int) -> tuple[int, int, bool]:
    """(source port, destination port, one-way) standing for an ICMP/ICMPv6 message's type and code."""
    counterpart = _COUNTERPARTS[proto].get(icmp_type)
    if counterpart is None:
        return icmp_type, icmp_code, True
    return icmp_type, counterpart, False


def flow_ports(proto: int, sport: int, dport: int) -> tuple[int, int, bool]:
    """The ports a flow is hashed with, and whether it is one-way.

    For ICMP/ICMPv6, ``sport``/``dport`` are the message's type and code as the packet carries
    them; for other protocols the ports pass through (two-way).
    """
    if proto in _COUNTERPARTS:
        return icmp_ports(proto, sport, dport)
    return sport, dport, False


def community_digest(src: bytes, sport: int, dst: bytes, dport: int, proto: int, *, seed: int = 0) -> bytes:
    """The sha1 digest of the Community ID of the flow sent from (src, sport) to (dst, dport).

    Addresses are 16 bytes (IPv4-mapped for IPv4) or 4; for ICMP/ICMPv6 the ports are the
    message's type and code, mapped here (``flow_ports``).
    """
    if len(src) == 16 and len(dst) == 16 and src[:12] == V4_PREFIX and dst[:12] == V4_PREFIX:
        src, dst = src[12:], dst[12:]
    sport, dport, one_way = flow_ports(proto, sport, dport)
    if not one_way and (dst < src or (dst == src and dport < sport)):
        src, sport, dst, dport = dst, dport, src, sport
    message = struct.pack("!H", seed) + src + dst + struct.pack("!BB", proto, 0)
    if proto in HASHED_PORT_PROTOCOLS:
        message += struct.pack("!HH", sport, dport)
    return hashlib.sha1(message).digest()


def render(digest: bytes) -> str:
    """The text form of a Community ID v1 digest: ``1:<base64>``."""
    return TEXT_PREFIX + base64.b64encode(digest).decode("ascii")


def community_id(src: bytes, sport: int, dst: bytes, dport: int, proto: int, *, seed: int = 0) -> str:
    """The Community ID v1 text of the flow sent from (src, sport) to (dst, dport); see ``community_digest``."""
    return render(community_digest(src, sport, dst, dport, proto, seed=seed))


def parse_community_id(text: str) -> bytes:
    """The 20-byte digest a ``1:<base64>`` Community ID names; ValueError when it is not one."""
    if not text.startswith(TEXT_PREFIX):
        raise ValueError("a Community ID v1 starts with '1:'")
    body = text[len(TEXT_PREFIX) :]
    try:
        digest = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Community ID v1 is '1:' and the base64 of a 20-byte sha1 digest") from None
    if len(digest) != DIGEST_SIZE or render(digest) != text:
        raise ValueError("a Community ID v1 is '1:' and the base64 of a 20-byte sha1 digest")
    return digest


def community_digests(
    a_hi: np.ndarray,
    a_lo: np.ndarray,
    a_port: np.ndarray,
    b_hi: np.ndarray,
    b_lo: np.ndarray,
    b_port: np.ndarray,
    proto: np.ndarray,
) -> np.ndarray:
    """``community_digest`` of many flows at once (not ICMP/ICMPv6): an (n, 20) uint8 array.

    Each end is a 16-byte address as two u64 halves (IPv4-mapped for IPv4) and a port. The
    messages are laid out by numpy and hashed by C-level iteration over hashlib, so the cost per
    flow is sha1's own.
    """
    a_hi, a_lo, b_hi, b_lo = (np.asarray(c, dtype=np.uint64) for c in (a_hi, a_lo, b_hi, b_lo))
    a_port, b_port = (np.asarray(c, dtype=np.uint16) for c in (a_port, b_port))
    proto = np.asarray(proto, dtype=np.uint8)
    n = len(proto)
    out = np.zeros((n, DIGEST_SIZE), dtype=np.uint8)
    if not n:
        return out
    swap = (b_hi < a_hi) | ((b_hi == a_hi) & ((b_lo < a_lo) | ((b_lo == a_lo) & (b_port < a_port))))
    lo_hi, lo_lo, lo_port = (
        np.where(swap, b_hi, a_hi),
        np.where(swap, b_lo, a_lo),
        np.where(swap, b_port, a_port),
    )
    hi_hi, hi_lo, hi_port = (
        np.where(swap, a_hi, b_hi),
        np.where(swap, a_lo, b_lo),
        np.where(swap, a_port, b_port),
    )
    mapped = np.uint64(0xFFFF)
    v4 = (lo_hi == 0) & (lo_lo >> np.uint64(32) == mapped) & (hi_hi == 0) & (hi_lo >> np.uint64(32) == mapped)
    with_ports = np.isin(proto, (PROTO_TCP, PROTO_UDP, PROTO_SCTP))
    for family in (True, False):
        width = 4 if family else 16
        size = 2 + 2 * width + 2 + 4
        for ported in (True, False):
            rows = np.flatnonzero((v4 == family) & (with_ports == ported))
            if not len(rows):
                continue
            message = np.zeros((len(rows), size), dtype=np.uint8)
            for at, hi, lo in ((2, lo_hi, lo_lo), (2 + width, hi_hi, hi_lo)):
                if family:
                    message[:, at : at + 4] = _big(lo[rows] & np.uint64(0xFFFFFFFF), ">u4")
                else:
                    message[:, at : at + 8] = _big(hi[rows], ">u8")
                    message[:, at + 8 : at + 16] = _big(lo[rows], ">u8")
            at = 2 + 2 * width
            message[:, at] = proto[rows]
            message[:, at + 2 : at + 4] = _big(lo_port[rows], ">u2")
            message[:, at + 4 : at + 6] = _big(hi_port[rows], ">u2")
            length = size if ported else size - 4
            chunks = np.ascontiguousarray(message[:, :length]).view(f"V{length}").ravel().tolist()
            digests = b"".join(map(_DIGEST, map(hashlib.sha1, chunks)))
            out[rows] = np.frombuffer(digests, dtype=np.uint8).reshape(-1, DIGEST_SIZE)
    return out


def render_many(digests: np.ndarray) -> list[str]:
    """``render`` of each row of an (n, 20) digest array, base64-encoded in one call.

    Each digest is padded to 21 bytes (a whole number of base64 groups): its 28 characters are
    then those of the 20 bytes alone but for the last, which base64 pads as ``=``.
    """
    n = len(digests)
    if not n:
        return []
    padded = np.zeros((n, DIGEST_SIZE + 1), dtype=np.uint8)
    padded[:, :DIGEST_SIZE] = digests
    encoded = np.frombuffer(base64.b64encode(padded.tobytes()), dtype=np.uint8).reshape(n, 28)
    width = len(TEXT_PREFIX) + 28
    text = np.empty((n, width), dtype=np.uint8)
    text[:, : len(TEXT_PREFIX)] = np.frombuffer(TEXT_PREFIX.encode(), dtype=np.uint8)
    text[:, len(TEXT_PREFIX) :] = encoded
    text[:, -1] = ord("=")
    joined = text.tobytes().decode("ascii")
    return [joined[at : at + width] for at in range(0, n * width, width)]


def _big(values: np.ndarray, dtype: str) -> np.ndarray:
    """Each value's big-endian bytes, one row per value."""
    width = np.dtype(dtype).itemsize
    return values.astype(dtype).view(np.uint8).reshape(-1, width)
