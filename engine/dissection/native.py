"""The per-record loops of an index build, compiled by numba (machine code, one pass each).

What numpy cannot do without a Python step or a dozen temporaries per record: following the
record headers of a classic pcap file, reading each frame's link layer, IP header and ports.
Each loop does exactly what its caller's docstring says (``engine.dissection.recordtable``,
``engine.dissection.fields``); the per-flow loops (folding flows, Community IDs, varints) are in
``engine.index.native``. ``tests/engine/test_index_bytes.py`` pins the bytes they produce.

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

from ..formats.capture import MAX_CAPLEN
from ..formats.pcap import RECORD_HEADER_SIZE
from . import packet as d
from .fields import FAST_VLAN_TAGS, SLOW_IPV6_HEADERS

jit = numba.njit(cache=True, nogil=True)

U8, U16, U64 = np.uint8, np.uint16, np.uint64
V4_MAPPED = U64(0xFFFF << 32)
MASK32 = U64(0xFFFFFFFF)

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
    while at + RECORD_HEADER_SIZE <= size:
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
        at += RECORD_HEADER_SIZE + caplen
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
    """Fill the flow fields of every record (``engine.dissection.fields.FlowColumns``) and mark the slow ones.

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


def load() -> None:
    """Make the per-record loops ready in this process (numba's start-up, the cached machine code).

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
