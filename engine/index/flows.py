"""The flow table of one capture file: packets grouped into direction-folded flows, with lookups.

Built from the per-record flow columns of ``engine.dissection.fields``, as the columns of
``engine.index.format`` (which describes them): numpy over whole columns, and the loops that
would need a dozen temporaries a row in numpy (fold, grouping keys, Community ID digests,
varints) compiled (``engine.index.native``).
"""

from __future__ import annotations

import numpy as np

from ..dissection.fields import FlowColumns
from ..dissection.recordtable import RecordTable
from .format import OFFSET_GROUP, narrowest

V4_MAPPED = np.uint64(0xFFFF)


def native():
    """The compiled loops (``engine.index.native``), imported by an index build when it first needs them."""
    from . import native

    return native


def fold(fields: FlowColumns, rows: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Direction-folded keys of ``rows`` and which were swapped (sent from the b end).

    The key is (a_hi, a_lo, b_hi, b_lo, ports) with (a, a_port) <= (b, b_port); ``ports`` packs
    a_port << 24 | b_port << 8 | protocol into one u64.
    """
    f = fields
    *key, swap = native().fold(rows, f.src_hi, f.src_lo, f.sport, f.dst_hi, f.dst_lo, f.dport, f.proto)
    return tuple(key), swap


def group(columns) -> tuple[np.ndarray, np.ndarray]:
    """(order, group starts): rows sorted so equal keys are adjacent, in file order within a group."""
    n = len(columns[0])
    if not n:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Sort one u64 per row: the high bits a mix of the key, the low bits the row number (so rows
    # of one key stay in file order). Equal mixes are then checked against the key itself: a
    # collision costs a slower sort, never a merged flow.
    row_bits = max(1, n.bit_length())
    keys = np.sort(native().group_keys(*columns, row_bits))
    if native().mixes_collide(keys, row_bits, *columns):
        order = np.lexsort(tuple(reversed(columns)))  # sort by the key itself
        boundary = np.zeros(n, dtype=bool)
        boundary[0] = True
        for column in columns:
            sorted_column = column[order]
            boundary[1:] |= sorted_column[1:] != sorted_column[:-1]
        return order, np.flatnonzero(boundary)
    order = (keys & np.uint64((1 << row_bits) - 1)).astype(np.int64)
    mixed = keys >> np.uint64(row_bits)
    boundary = np.empty(n, dtype=bool)
    boundary[0] = True
    np.not_equal(mixed[1:], mixed[:-1], out=boundary[1:])
    return order, np.flatnonzero(boundary)


def is_v4(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Which 16-byte addresses (as halves) are IPv4-mapped."""
    return (hi == 0) & (lo >> np.uint64(32) == V4_MAPPED)


def cid_prefixes(
    a_hi: np.ndarray, a_lo: np.ndarray, b_hi: np.ndarray, b_lo: np.ndarray, ports: np.ndarray, v4: np.ndarray
) -> np.ndarray:
    """The first two bytes (big-endian u16) of each flow's Community ID v1 digest; 0 for ICMP/ICMPv6.

    The fold already orders the ends as Community ID does (address, then port, ascending).
    """
    return native().community_id_heads(a_hi, a_lo, b_hi, b_lo, ports, v4)


def flow_table(
    table: RecordTable, fields: FlowColumns, nanosecond: bool
) -> tuple[dict[str, np.ndarray], int, int]:
    """(columns of the flow table, lookups and packet offsets; flows; IPv4 flows)."""
    rows = np.flatnonzero(fields.has_flow)
    key, swap = fold(fields, rows)
    order, starts = group(key)
    counts = np.diff(np.append(starts, len(order)))
    first_rows = order[starts]
    a_hi, a_lo, b_hi, b_lo, ports = (column[first_rows] for column in key)
    v4 = is_v4(a_hi, a_lo) & is_v4(b_hi, b_lo)
    cid = cid_prefixes(a_hi, a_lo, b_hi, b_lo, ports, v4)
    # The table's order: IPv4 flows first, each family by Community ID prefix (ties as grouped).
    flow_order = np.argsort((~v4).astype(np.uint32) << 16 | cid, kind="stable")
    n_flows, n_v4 = len(starts), int(v4.sum())
    packet_rows = rows[order]
    ts = table.ts_ns[packet_rows]
    base = int(table.ts_ns.min()) if len(table.ts_ns) else 0
    unit = 1 if nanosecond else 1000
    columns: dict[str, np.ndarray] = {}
    if n_flows:
        first_ns = np.minimum.reduceat(ts, starts)[flow_order]
        last_ns = np.maximum.reduceat(ts, starts)[flow_order]
        flow_bytes = np.add.reduceat(table.orig_len[packet_rows], starts)[flow_order]
    else:
        first_ns = last_ns = flow_bytes = np.zeros(0, dtype=np.int64)
    a_hi, a_lo, b_hi, b_lo, ports = (c[flow_order] for c in (a_hi, a_lo, b_hi, b_lo, ports))
    v4 = v4[flow_order]
    columns["a4"] = (a_lo[:n_v4] & np.uint64(0xFFFFFFFF)).astype("<u4")
    columns["b4"] = (b_lo[:n_v4] & np.uint64(0xFFFFFFFF)).astype("<u4")
    for name, column in (("a6hi", a_hi), ("a6lo", a_lo), ("b6hi", b_hi), ("b6lo", b_lo)):
        columns[name] = column[n_v4:].astype("<u8")
    columns["aport"] = (ports >> np.uint64(24)).astype("<u2")
    columns["bport"] = ((ports >> np.uint64(8)) & np.uint64(0xFFFF)).astype("<u2")
    columns["proto"] = (ports & np.uint64(0xFF)).astype("<u1")
    columns["flags"] = swap[first_rows][flow_order].astype("<u1")
    columns["first"] = narrowest((first_ns - base) // unit, "<u4")
    columns["last"] = narrowest(-((base - last_ns) // unit), "<u4")  # rounded up
    columns["packets"] = narrowest(counts[flow_order])
    columns["bytes"] = narrowest(flow_bytes, "<u2")
    columns["cid"] = cid[flow_order].astype("<u2")
    columns.update(_address_lookups(columns, n_v4))
    columns.update(_port_lookup(columns))
    columns.update(_offsets(table.offset[packet_rows], starts, counts, flow_order))
    return columns, n_flows, n_v4


def _address_lookups(columns: dict[str, np.ndarray], n_v4: int) -> dict[str, np.ndarray]:
    """Both ends of every flow, as flow << 1 | end, sorted by address: one lookup per family."""
    ends4 = np.stack([columns["a4"], columns["b4"]], axis=1).ravel()
    by4 = np.argsort(ends4, kind="stable")
    hi = np.stack([columns["a6hi"], columns["b6hi"]], axis=1).ravel()
    lo = np.stack([columns["a6lo"], columns["b6lo"]], axis=1).ravel()
    by6 = np.lexsort((lo, hi)) + 2 * n_v4
    return {"byaddr4": by4.astype("<u4"), "byaddr6": by6.astype("<u4")}


def _port_lookup(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Both ends of every flow, as flow << 1 | end, sorted by port."""
    ends = np.stack([columns["aport"], columns["bport"]], axis=1).ravel()
    return {"byport": np.argsort(ends, kind="stable").astype("<u4")}


def _offsets(
    grouped: np.ndarray, starts: np.ndarray, counts: np.ndarray, flow_order: np.ndarray
) -> dict[str, np.ndarray]:
    """The packet offsets of every flow in table order, as varint distances, and where groups start.

    ``grouped`` holds the record offsets flow by flow in the grouping's order (``starts``, ``counts``).
    """
    stream, at = native().offset_varints(grouped, starts, counts, flow_order)
    group_at = at[::OFFSET_GROUP]
    if len(flow_order) % OFFSET_GROUP:
        group_at = np.append(group_at, at[-1])
    return {"offsets": stream, "offsetat": narrowest(group_at, "<u4")}
