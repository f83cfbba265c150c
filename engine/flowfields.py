"""The flow fields of every record of a capture file at once, in one compiled pass over the mapped file.

The pass (``engine.native.flow_fields``) reads each frame's link layer, IP header and ports in
place. Packets it does not handle (IPv6 extension headers, fragments, more than three VLAN tags)
go through ``engine.dissect`` one by one, in file order; they are rare on real links. Later
fragments follow the fragment rule of ``engine.dissect``.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from . import dissect as d
from .recordtable import RecordTable


@dataclass
class FlowColumns:
    """Flow fields of every record: ``has_flow`` says which ones carry one."""

    has_flow: np.ndarray  # bool
    src_hi: np.ndarray  # uint64 halves of the 16-byte address
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray  # uint8
    sport: np.ndarray  # uint16
    dport: np.ndarray  # uint16


def address_halves(address: bytes) -> tuple[int, int]:
    """A 16-byte address as two big-endian 64-bit halves, as the columns hold it."""
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def _new_columns(n: int) -> FlowColumns:
    return FlowColumns(
        has_flow=np.zeros(n, dtype=bool),
        src_hi=np.zeros(n, dtype=np.uint64),
        src_lo=np.zeros(n, dtype=np.uint64),
        dst_hi=np.zeros(n, dtype=np.uint64),
        dst_lo=np.zeros(n, dtype=np.uint64),
        proto=np.zeros(n, dtype=np.uint8),
        sport=np.zeros(n, dtype=np.uint16),
        dport=np.zeros(n, dtype=np.uint16),
    )


def flow_columns(mm: mmap.mmap | bytes, size: int, table: RecordTable) -> tuple[FlowColumns, np.ndarray]:
    """Flow fields of every record by the compiled pass, and the rows left for the per-packet path."""
    from . import native  # numba is loaded by index builds only

    f = _new_columns(len(table.offset))
    slow = np.zeros(len(table.offset), dtype=bool)
    buf = np.frombuffer(mm, dtype=np.uint8, count=size)
    columns = (f.has_flow, f.src_hi, f.src_lo, f.dst_hi, f.dst_lo, f.proto, f.sport, f.dport)
    # contiguous columns (a classic pcap's lengths are a column of its record headers): one
    # compiled variant of the loop serves every file
    data, caplen, linktype = (np.ascontiguousarray(c) for c in (table.data, table.caplen, table.linktype))
    native.flow_fields(buf, data, caplen, linktype, *columns, slow)
    del buf  # no view of the mapping may outlive the build
    return f, np.flatnonzero(slow)


def fill_slow_rows(mm: mmap.mmap, table: RecordTable, fields: FlowColumns, rows: np.ndarray) -> None:
    """Dissect the rows the compiled pass left, one by one, in file order, applying the fragment
    rule of ``engine.dissect`` to later fragments (a later one may wait for its first fragment)."""
    first_fragments: dict[tuple, d.FlowFields] = {}
    waiting: dict[tuple, list[int]] = {}  # reassembly key -> later fragments with no first one yet
    for row in rows.tolist():
        start = int(table.data[row])
        frame = bytes(mm[start : start + int(table.caplen[row])])
        found = d.dissect(int(table.linktype[row]), frame)
        if found is None:
            continue
        if found.later_fragment:
            assert found.frag_key is not None  # a later fragment always has its reassembly key
            first = first_fragments.get(found.frag_key)
            if first is None:
                waiting.setdefault(found.frag_key, []).append(row)
                continue
            found = first
        elif found.frag_key is not None:
            first_fragments[found.frag_key] = found
            for earlier in waiting.pop(found.frag_key, ()):
                _set_row(fields, earlier, found)
        _set_row(fields, row, found)
    # what is still waiting has no first fragment in this file: no flow known


def _set_row(fields: FlowColumns, row: int, found: d.FlowFields) -> None:
    fields.has_flow[row] = True
    fields.src_hi[row], fields.src_lo[row] = address_halves(found.src)
    fields.dst_hi[row], fields.dst_lo[row] = address_halves(found.dst)
    fields.proto[row] = found.proto
    fields.sport[row], fields.dport[row] = found.sport, found.dport
