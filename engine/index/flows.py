"""The flow table of one capture file: packets grouped into direction-folded flows, with lookups.

Built with numpy from the per-record flow columns of ``engine.flowfields``; the on-disk layout of
these tables is described in ``engine.index.format``.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import numpy as np

from .. import dissect as d
from ..flowfields import FlowColumns
from ..recordtable import RecordTable

FLOW_DTYPE = np.dtype(
    [
        ("a_hi", "<u8"),
        ("a_lo", "<u8"),
        ("b_hi", "<u8"),
        ("b_lo", "<u8"),
        ("first_ns", "<i8"),
        ("last_ns", "<i8"),
        ("bytes", "<u8"),  # original lengths, summed
        ("start", "<u8"),  # first entry in the packet-offset list
        ("packets", "<u4"),
        ("a_port", "<u2"),
        ("b_port", "<u2"),
        ("proto", "u1"),
        ("community_id", "V20"),  # Community ID v1 (seed 0) sha1 digest; text form: community_id()
        ("reserved", "V3"),
    ]
)
# The lookups are stored column by column: a binary search needs a contiguous sorted column.
LOOKUP_COLUMNS = (
    ("address_hi", "<u8"),
    ("address_lo", "<u8"),
    ("address_flow", "<u4"),
    ("port", "<u2"),
    ("port_flow", "<u4"),
)


def fold(fields: FlowColumns, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Direction-folded keys of ``rows``: (a_hi, a_lo, b_hi, b_lo, ports) with (a, a_port) <= (b, b_port).

    ``ports`` packs a_port << 24 | b_port << 8 | protocol into one u64.
    """
    s_hi, s_lo, sp = fields.src_hi[rows], fields.src_lo[rows], fields.sport[rows]
    d_hi, d_lo, dp = fields.dst_hi[rows], fields.dst_lo[rows], fields.dport[rows]
    swap = (s_hi > d_hi) | ((s_hi == d_hi) & ((s_lo > d_lo) | ((s_lo == d_lo) & (sp > dp))))
    a_port = np.where(swap, dp, sp).astype(np.uint64)
    b_port = np.where(swap, sp, dp).astype(np.uint64)
    return (
        np.where(swap, d_hi, s_hi),
        np.where(swap, d_lo, s_lo),
        np.where(swap, s_hi, d_hi),
        np.where(swap, s_lo, d_lo),
        a_port << np.uint64(24) | b_port << np.uint64(8) | fields.proto[rows],
    )


def group(columns) -> tuple[np.ndarray, np.ndarray]:
    """(order, group starts): rows sorted so equal keys are adjacent, in file order within a group."""
    n = len(columns[0])
    if not n:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Sort one u64 per row: the high bits a mix of the key, the low bits the row number (so rows
    # of one key stay in file order). Equal mixes are then checked against the key itself: a
    # collision costs a slower sort, never a merged flow.
    h = np.uint64(0x9E3779B97F4A7C15) * columns[0]
    for column, k in zip(
        columns[1:],
        (0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD),
        strict=True,
    ):
        h = (h ^ (h >> np.uint64(29))) * np.uint64(k) + column
    row_bits = np.uint64(max(1, n.bit_length()))
    keys = np.sort((h >> row_bits << row_bits) | np.arange(n, dtype=np.uint64))
    order = (keys & ((np.uint64(1) << row_bits) - np.uint64(1))).astype(np.int64)
    mixed = keys >> row_bits
    boundary = np.empty(n, dtype=bool)
    boundary[0] = True
    np.not_equal(mixed[1:], mixed[:-1], out=boundary[1:])
    inside = ~boundary[1:]
    for column in columns:
        sorted_column = column[order]
        if np.any(inside & (sorted_column[1:] != sorted_column[:-1])):
            order = np.lexsort(tuple(reversed(columns)))  # a collision: sort by the key itself
            boundary[1:] = False
            for c in columns:
                sc = c[order]
                boundary[1:] |= sc[1:] != sc[:-1]
            break
    return order, np.flatnonzero(boundary)


def community_id(a: bytes, a_port: int, b: bytes, b_port: int, proto: int) -> str:
    """Community ID v1 (seed 0) of a flow, addresses given as 16 bytes (IPv4-mapped for IPv4)."""
    return "1:" + base64.b64encode(_community_digest(a, a_port, b, b_port, proto)).decode()


def _community_digest(a: bytes, a_port: int, b: bytes, b_port: int, proto: int) -> bytes:
    if a[:12] == d.V4_PREFIX and b[:12] == d.V4_PREFIX:
        a, b = a[12:], b[12:]
    if (b, b_port) < (a, a_port):
        a, a_port, b, b_port = b, b_port, a, a_port
    data = struct.pack("!H", 0) + a + b + struct.pack("!BB", proto, 0)
    if proto in d.PORT_PROTOCOLS:
        data += struct.pack("!HH", a_port, b_port)
    return hashlib.sha1(data).digest()


V4_MESSAGE = np.dtype(
    [
        ("seed", ">u2"),
        ("a", ">u4"),
        ("b", ">u4"),
        ("proto", "u1"),
        ("pad", "u1"),
        ("a_port", ">u2"),
        ("b_port", ">u2"),
    ]
)
V6_MESSAGE = np.dtype(
    [
        ("seed", ">u2"),
        ("a_hi", ">u8"),
        ("a_lo", ">u8"),
        ("b_hi", ">u8"),
        ("b_lo", ">u8"),
        ("proto", "u1"),
        ("pad", "u1"),
        ("a_port", ">u2"),
        ("b_port", ">u2"),
    ]
)


def community_digests(flows: np.ndarray) -> np.ndarray:
    """Community ID v1 sha1 digests of every flow row, the hashed messages laid out by numpy.

    Rows are folded as Community ID orders its endpoints, (address, port) ascending.
    """
    out = np.zeros(len(flows), dtype="V20")
    v4 = (flows["a_hi"] == 0) & (flows["a_lo"] >> np.uint64(32) == 0xFFFF)
    v4 &= (flows["b_hi"] == 0) & (flows["b_lo"] >> np.uint64(32) == 0xFFFF)
    for rows, dtype in ((np.flatnonzero(v4), V4_MESSAGE), (np.flatnonzero(~v4), V6_MESSAGE)):
        chosen = flows[rows]
        messages = np.zeros(len(rows), dtype=dtype)
        for name in dtype.names:
            if name in ("a", "b"):
                messages[name] = chosen[name + "_lo"] & np.uint64(0xFFFFFFFF)
            elif name not in ("seed", "pad"):
                messages[name] = chosen[name]
        size = dtype.itemsize
        with_ports = np.isin(chosen["proto"], d.PORT_PROTOCOLS).tolist()
        raw = memoryview(messages.tobytes())
        sha1 = hashlib.sha1
        digests = [
            sha1(raw[i * size : (i + 1) * size if ports else (i + 1) * size - 4]).digest()
            for i, ports in enumerate(with_ports)
        ]
        if digests:
            out[rows] = np.frombuffer(b"".join(digests), dtype="V20")
    return out


def flow_table(table: RecordTable, fields: FlowColumns) -> tuple[np.ndarray, np.ndarray]:
    """(flow table, record offsets grouped by flow) of the records that carry flow fields."""
    rows = np.flatnonzero(fields.has_flow)
    columns = fold(fields, rows)
    order, starts = group(columns)
    packet_rows = rows[order]
    counts = np.diff(np.append(starts, len(order)))
    flows = np.zeros(len(starts), dtype=FLOW_DTYPE)
    first_rows = order[starts]
    for name, column in zip(("a_hi", "a_lo", "b_hi", "b_lo"), columns, strict=False):
        flows[name] = column[first_rows]
    ports = columns[4][first_rows]
    flows["a_port"] = ports >> np.uint64(24)
    flows["b_port"] = (ports >> np.uint64(8)) & np.uint64(0xFFFF)
    flows["proto"] = ports & np.uint64(0xFF)
    ts = table.ts_ns[packet_rows]
    if len(starts):
        flows["first_ns"] = np.minimum.reduceat(ts, starts)
        flows["last_ns"] = np.maximum.reduceat(ts, starts)
        flows["bytes"] = np.add.reduceat(table.orig_len[packet_rows], starts)
    flows["start"] = starts
    flows["packets"] = counts
    flows["community_id"] = community_digests(flows)
    return flows, table.offset[packet_rows]


def lookups(flows: np.ndarray) -> list[np.ndarray]:
    """The LOOKUP_COLUMNS over both ends of every flow: addresses sorted by (hi, lo), ports sorted."""
    ids = np.arange(len(flows), dtype=np.uint32)
    hi = np.concatenate([flows["a_hi"], flows["b_hi"]])
    lo = np.concatenate([flows["a_lo"], flows["b_lo"]])
    by_address = np.lexsort((lo, hi))
    port = np.concatenate([flows["a_port"], flows["b_port"]])
    by_port = np.argsort(port, kind="stable")
    flow = np.concatenate([ids, ids])
    columns = [hi[by_address], lo[by_address], flow[by_address], port[by_port], flow[by_port]]
    return [c.astype(dtype) for c, (_, dtype) in zip(columns, LOOKUP_COLUMNS, strict=True)]
