"""The per-record and per-flow loops of an index build, compiled by numba (machine code, one pass each).

What numpy cannot do without a Python step or a dozen temporaries per record: following the
record headers of a classic pcap file, reading each frame's link layer, IP header and ports,
folding flows, hashing Community IDs, writing varints. Each loop does exactly what its caller's
docstring says (``engine.recordtable``, ``engine.flowfields``, ``engine.index.flows``,
``engine.index.format``); ``tests/engine/test_index_bytes.py`` pins the bytes they produce.

Only index builds import this module (the filer, reindex, and ``/flows`` over a file without an
index): numba's start-up costs a process about 0.5 s of CPU and 45 MB of its own memory (plus
80 MB of shared library pages), so the streaming path does without it. The machine code is
cached on disk (``cache=True``): in ``__pycache__`` beside this file when it is writable, else
where ``NUMBA_CACHE_DIR`` says (the project sets it under ``PAR_DATA_DIR`` for a read-only
tree), else numba's user cache directory. Compiling it afresh takes 10-30 s of CPU, once per
cache and version of this file; ``load`` readies it all in a process that then forks workers.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from . import dissect as d
from .flowfields import FAST_VLAN_TAGS, SLOW_IPV6_HEADERS
from .formats.capture import MAX_CAPLEN
from .index.flows import ICMP_PROTOCOLS

jit = numba.njit(cache=True, nogil=True)

U8, U16, U64 = np.uint8, np.uint16, np.uint64
V4_MAPPED = U64(0xFFFF << 32)
MASK32 = U64(0xFFFFFFFF)
RECORD_HEADER = 16  # a classic pcap record header
WALK_AHEAD = 2048  # bytes ahead of the record walk that are fetched into the cache meanwhile
ROWS_AHEAD = 16  # records ahead of the dissection whose frame heads are fetched meanwhile


# ---------------------------------------------------------------- bytes of the mapped file


@jit
def _byte(buf, at):
    """The byte at ``at``; 0 past the end of the file (as ``recordtable.gather`` reads it)."""
    return buf[at] if at < buf.size else U8(0)


@jit
def _be16(buf, at):
    return (np.int64(_byte(buf, at)) << 8) | np.int64(_byte(buf, at + 1))


@jit
def _be32(buf, at):
    return (_be16(buf, at) << 16) | _be16(buf, at + 2)


@jit
def _be64(buf, at):
    return (U64(_be32(buf, at)) << U64(32)) | U64(_be32(buf, at + 4))


@jit
def _le32(buf, at):
    return (
        np.int64(_byte(buf, at))
        | np.int64(_byte(buf, at + 1)) << 8
        | np.int64(_byte(buf, at + 2)) << 16
        | np.int64(_byte(buf, at + 3)) << 24
    )


@intrinsic
def _prefetch(typingctx, array, at):
    """Ask the CPU to fetch the cache line of ``array[at]`` (LLVM's prefetch: never faults, no result).

    The loops over the mapped capture wait on memory, not on arithmetic; records ahead are known
    (or, in the walk, likely) before their turn, so their lines can be on their way meanwhile.
    """

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, data, [args[1]], wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0i8",
        )
        # read, keep in every cache level, data (not instructions)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return numba.types.void(array, at), codegen


# ---------------------------------------------------------------- the record walk


@jit
def record_headers(buf, first, big_endian):
    """(offsets, headers) of the chain of classic pcap records from ``first`` while a whole header fits.

    ``headers`` holds each record header's four u32 (seconds, fraction, captured and original
    length, in the file's byte order) as int64. Each captured length says where the next record
    starts; the chain ends after the first impossible one (more than MAX_CAPLEN), which the
    caller finds as damage.
    """
    size = buf.size
    offsets = np.empty(max(16, size // 128), dtype=np.int64)  # records of 112 bytes: DNS-like
    headers = np.empty((offsets.size, 4), dtype=np.int64)
    n = 0
    at = np.int64(first)
    while at + RECORD_HEADER <= size:
        if at + WALK_AHEAD < size:
            _prefetch(buf, at + WALK_AHEAD)
        if n == offsets.size:
            offsets = _grown(offsets, n)
            headers = _grown(headers, n)
        offsets[n] = at
        for k in range(4):
            headers[n, k] = _be32(buf, at + 4 * k) if big_endian else _le32(buf, at + 4 * k)
        caplen = headers[n, 2]
        n += 1
        if caplen > MAX_CAPLEN:
            break
        at += RECORD_HEADER + caplen
    return offsets[:n], headers[:n]


@jit
def _grown(array, used):
    """``array`` with twice the rows, its first ``used`` rows kept."""
    grown = np.empty((2 * array.shape[0],) + array.shape[1:], dtype=array.dtype)
    grown[:used] = array[:used]
    return grown


# ---------------------------------------------------------------- flow fields of every record


@jit
def _ethertype_version(ethertype, present):
    if not present:
        return 0
    return 4 if ethertype == d.ETH_IPV4 else 6 if ethertype == d.ETH_IPV6 else 0


@jit
def _link_layer(buf, at, caplen, linktype):
    """(IP header offset in the frame, IP version 4/6 or 0, needs the per-packet path)."""
    if linktype == d.LINKTYPE_ETHERNET:
        ethertype = _be16(buf, at + 12)
        start = 14
        for tag in range(FAST_VLAN_TAGS):
            if not (ethertype in d.VLAN_TPIDS and caplen >= 18 + 4 * tag):
                break
            ethertype = _be16(buf, at + 16 + 4 * tag)
            start += 4
        deeper = ethertype in d.VLAN_TPIDS and start + 4 <= caplen
        return start, _ethertype_version(ethertype, caplen >= 14), deeper
    if linktype == d.LINKTYPE_LINUX_SLL:
        return 16, _ethertype_version(_be16(buf, at + 14), caplen >= 16), False
    if linktype == d.LINKTYPE_LINUX_SLL2:
        return 20, _ethertype_version(_be16(buf, at), caplen >= 20), False
    if linktype in (d.LINKTYPE_NULL, d.LINKTYPE_LOOP):
        family = _be32(buf, at)
        if linktype == d.LINKTYPE_NULL:
            little = _le32(buf, at)
            if little <= 0xFFFF:  # written in the host byte order of the writer
                family = little
        version = 4 if family == d.AF_INET else 6 if family in d.AF_INET6 else 0
        return 4, version if caplen >= 4 else 0, False
    if linktype in d.RAW_LINKTYPES:
        version = np.int64(_byte(buf, at)) >> 4
        return 0, version if (version == 4 or version == 6) and caplen >= 1 else 0, False
    if linktype == d.LINKTYPE_IPV4:
        return 0, 4, False
    if linktype == d.LINKTYPE_IPV6:
        return 0, 6, False
    return 0, 0, False


@jit
def flow_fields(
    buf, data, caplen, linktype, has_flow, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, slow
):
    """Fill the flow fields of every record (``engine.flowfields.FlowColumns``) and mark the slow ones.

    Every record gets values (those without a flow too, as the arrays always held them); a record
    marked slow needs the per-packet path (deep VLAN stacks, IPv4 fragments, IPv6 extensions).
    """
    for row in range(data.size):
        if row + ROWS_AHEAD < data.size and data[row + ROWS_AHEAD] + 64 <= buf.size:
            _prefetch(buf, data[row + ROWS_AHEAD])  # the link layer and IP header span two lines
            _prefetch(buf, data[row + ROWS_AHEAD] + 63)
        at, length = data[row], caplen[row]
        start, version, is_slow = _link_layer(buf, at, length, linktype[row])
        ip = at + start
        room = length - start
        first = np.int64(_byte(buf, ip))
        nibble, ihl = first >> 4, (first & 0x0F) * 4
        v4 = version == 4 and nibble == 4 and ihl >= 20 and room >= 20 and not is_slow
        v6 = version == 6 and nibble == 6 and room >= 40 and not is_slow
        fragment = v4 and (_be16(buf, ip + 6) & 0x3FFF) != 0
        next_header = _byte(buf, ip + 6)
        extension = v6 and next_header in SLOW_IPV6_HEADERS
        is_slow = is_slow or fragment or extension
        v4 = v4 and not fragment
        v6 = v6 and not extension
        protocol = _byte(buf, ip + 9) if v4 else next_header
        transport = ihl if v4 else 40
        with_ports = protocol in d.PORT_PROTOCOLS
        has_flow[row] = (v4 or v6) and (not with_ports or transport + 4 <= room)
        ports = ip + min(transport, 60)
        sport[row] = _be16(buf, ports) if with_ports else 0
        dport[row] = _be16(buf, ports + 2) if with_ports else 0
        if v6:
            src_hi[row], src_lo[row] = _be64(buf, ip + 8), _be64(buf, ip + 16)
            dst_hi[row], dst_lo[row] = _be64(buf, ip + 24), _be64(buf, ip + 32)
        else:
            src_hi[row], src_lo[row] = 0, V4_MAPPED | U64(_be32(buf, ip + 12))
            dst_hi[row], dst_lo[row] = 0, V4_MAPPED | U64(_be32(buf, ip + 16))
        proto[row] = protocol
        slow[row] = is_slow


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
    """Make every loop ready in this process (numba's start-up, the cached machine code), as a build would.

    A process about to fork index-building workers calls it once, so they inherit it ready.
    """
    empty = np.zeros(0, np.int64)
    none64, none16 = np.zeros(0, U64), np.zeros(0, U16)
    record_headers(np.frombuffer(b"", U8), 0, False)
    flow_fields(
        np.frombuffer(b"", U8),
        empty,
        empty,
        empty,
        np.zeros(0, np.bool_),
        *[none64] * 4,
        np.zeros(0, U8),
        none16,
        none16,
        np.zeros(0, np.bool_),
    )
    *key, swap = fold(empty, none64, none64, none16, none64, none64, none16, np.zeros(0, U8))
    mixes_collide(np.sort(group_keys(*key, 1)), 1, *key)
    community_id_heads(*key, swap)
    offset_varints(empty, empty, empty, empty)
