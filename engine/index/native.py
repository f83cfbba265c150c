"""The per-flow loops of an index build, compiled by numba: folding flows, hashing Community IDs,
writing varints. Each does exactly what its caller's docstring says (``engine.index.flows``,
``engine.index.format``); ``tests/engine/test_index_bytes.py`` pins the bytes they produce.

The per-record loops (the record walk, each frame's link layer, IP header and ports) are in
``engine.dissection.native``; what its docstring says of numba's cost and cache holds here too.
"""

from __future__ import annotations

import numpy as np

from ..dissection import native as records
from ..dissection import packet as d
from ..dissection.native import MASK32, U8, U16, U64, jit
from ..dissection.packet import ICMP_PROTOCOLS

# ---------------------------------------------------------------- flows


@jit
def fold(rows, s_hi, s_lo, sport, d_hi, d_lo, dport, proto):
    """Direction-folded keys of ``rows`` (``engine.index.flows.fold``): five u64 columns and the swaps."""
    n = rows.size
    a_hi, a_lo = np.empty(n, U64), np.empty(n, U64)
    b_hi, b_lo = np.empty(n, U64), np.empty(n, U64)
    ports, swap = np.empty(n, U64), np.empty(n, np.bool_)
    for k in range(n):
        r = rows[k]
        sh, sl, sp, dh, dl, dp = s_hi[r], s_lo[r], sport[r], d_hi[r], d_lo[r], dport[r]
        swapped = sh > dh or (sh == dh and (sl > dl or (sl == dl and sp > dp)))
        if swapped:
            sh, sl, sp, dh, dl, dp = dh, dl, dp, sh, sl, sp
        a_hi[k], a_lo[k], b_hi[k], b_lo[k] = sh, sl, dh, dl
        ports[k] = U64(sp) << U64(24) | U64(dp) << U64(8) | U64(proto[r])
        swap[k] = swapped
    return a_hi, a_lo, b_hi, b_lo, ports, swap


@jit
def group_keys(c0, c1, c2, c3, c4, row_bits):
    """One u64 per row: a mix of its five key columns in the high bits, the row number in the low."""
    keep = ~((U64(1) << U64(row_bits)) - U64(1))
    out = np.empty(c0.size, U64)
    for k in range(c0.size):
        h = U64(0x9E3779B97F4A7C15) * c0[k]
        h = (h ^ (h >> U64(29))) * U64(0xC2B2AE3D27D4EB4F) + c1[k]
        h = (h ^ (h >> U64(29))) * U64(0x165667B19E3779F9) + c2[k]
        h = (h ^ (h >> U64(29))) * U64(0xD6E8FEB86659FD93) + c3[k]
        h = (h ^ (h >> U64(29))) * U64(0xFF51AFD7ED558CCD) + c4[k]
        out[k] = (h & keep) | U64(k)
    return out


@jit
def mixes_collide(keys, row_bits, c0, c1, c2, c3, c4):
    """Whether two adjacent sorted ``keys`` have the same mix but rows of different key columns."""
    low = (U64(1) << U64(row_bits)) - U64(1)
    for k in range(1, keys.size):
        if keys[k] >> U64(row_bits) == keys[k - 1] >> U64(row_bits):
            r, q = keys[k] & low, keys[k - 1] & low
            if c0[r] != c0[q] or c1[r] != c1[q] or c2[r] != c2[q] or c3[r] != c3[q] or c4[r] != c4[q]:
                return True
    return False


# ---------------------------------------------------------------- Community ID digests


@jit
def _rotl(x, n):
    """``x`` (32 bits held in a u64: numba widens u32 arithmetic) rotated left by ``n``."""
    return ((x << U64(n)) | (x >> U64(32 - n))) & MASK32


@jit
def _sha1_head(block, w):
    """The first 16 bits of the SHA-1 of one padded 64-byte block (``w``: room for its schedule)."""
    for t in range(16):
        w[t] = (
            U64(block[4 * t]) << U64(24)
            | U64(block[4 * t + 1]) << U64(16)
            | U64(block[4 * t + 2]) << U64(8)
            | U64(block[4 * t + 3])
        )
    for t in range(16, 80):
        w[t] = _rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
    h0 = U64(0x67452301)
    a, b, c, d, e = h0, U64(0xEFCDAB89), U64(0x98BADCFE), U64(0x10325476), U64(0xC3D2E1F0)
    for t in range(80):
        if t < 20:
            f, k = (b & c) | (~b & MASK32 & d), U64(0x5A827999)
        elif t < 40:
            f, k = b ^ c ^ d, U64(0x6ED9EBA1)
        elif t < 60:
            f, k = (b & c) | (b & d) | (c & d), U64(0x8F1BBCDC)
        else:
            f, k = b ^ c ^ d, U64(0xCA62C1D6)
        temp = (_rotl(a, 5) + f + e + k + w[t]) & MASK32
        e, d, c, b, a = d, c, _rotl(b, 30), a, temp
    return U16(((h0 + a) & MASK32) >> U64(16))


@jit
def _put(block, at, value, width):
    for k in range(width):
        block[at + k] = U8((value >> U64(8 * (width - 1 - k))) & U64(0xFF))


@jit
def community_id_heads(a_hi, a_lo, b_hi, b_lo, ports, v4):
    """The first two bytes (big-endian) of each flow's Community ID v1 (seed 0) digest; 0 for ICMP/ICMPv6.

    The message is seed, both addresses, protocol, a zero byte, and both ports for TCP/UDP/SCTP;
    the fold already orders the ends as Community ID does. Each fits one SHA-1 block.
    """
    out = np.zeros(ports.size, U16)
    block = np.zeros(64, U8)
    w = np.empty(80, U64)
    for k in range(ports.size):
        proto = ports[k] & U64(0xFF)
        if proto in ICMP_PROTOCOLS:
            continue
        block[:] = 0
        at = 2
        if v4[k]:
            _put(block, at, a_lo[k] & MASK32, 4)
            _put(block, at + 4, b_lo[k] & MASK32, 4)
            at += 8
        else:
            _put(block, at, a_hi[k], 8)
            _put(block, at + 8, a_lo[k], 8)
            _put(block, at + 16, b_hi[k], 8)
            _put(block, at + 24, b_lo[k], 8)
            at += 32
        block[at] = U8(proto)
        at += 2
        if proto in d.PORT_PROTOCOLS:
            _put(block, at, ports[k] >> U64(24), 2)
            _put(block, at + 2, (ports[k] >> U64(8)) & U64(0xFFFF), 2)
            at += 4
        block[at] = 0x80
        _put(block, 56, U64(8 * at), 8)
        out[k] = _sha1_head(block, w)
    return out


# ---------------------------------------------------------------- varints


@jit
def _varint_length(value):
    length = 1
    while value >= U64(0x80):
        value >>= U64(7)
        length += 1
    return length


@jit
def offset_varints(grouped, starts, counts, flow_order):
    """The ``offsets`` column (``engine.index.format``) and where each flow's varints start in it.

    ``grouped`` holds the record offsets flow by flow in the grouping's order (``starts``,
    ``counts``); the flows are written in table order (``flow_order``), each offset as an unsigned
    LEB128 varint of its distance to the flow's previous one (the first: the offset itself).
    Returns (stream, at) with ``at[f]`` where flow f's varints start and ``at[-1]`` the length.
    """
    flows = flow_order.size
    at = np.zeros(flows + 1, np.int64)
    longest = _varint_length(U64(grouped.max())) if grouped.size else 1  # no distance exceeds an offset
    stream = np.empty(grouped.size * longest, U8)
    out = 0
    for f in range(flows):
        first, previous = starts[flow_order[f]], 0
        for k in range(first, first + counts[flow_order[f]]):
            value = U64(grouped[k] - previous)
            previous = grouped[k]
            while value >= U64(0x80):
                stream[out] = U8((value & U64(0x7F)) | U64(0x80))
                value >>= U64(7)
                out += 1
            stream[out] = U8(value)
            out += 1
        at[f + 1] = out
    return stream[:out].copy(), at


def load() -> None:
    """Make every loop of an index build ready in this process (numba's start-up, the cached machine code).

    A process about to fork index-building workers calls it once, so they inherit it ready.
    """
    records.load()
    empty = np.zeros(0, np.int64)
    none64, none16 = np.zeros(0, U64), np.zeros(0, U16)
    *key, swap = fold(empty, none64, none64, none16, none64, none64, none16, np.zeros(0, U8))
    mixes_collide(np.sort(group_keys(*key, 1)), 1, *key)
    community_id_heads(*key, swap)
    offset_varints(empty, empty, empty, empty)
