"""Listing the flows a Selection names in a window, from the files' flow tables (SPEC "GET /flows").

An indexed file answers from its index's flow table: no packet record is read. A file without a
current index (the live file) gets the same flow table built in memory by the index's own code,
so both give the same rows. Rows of one flow in several files are merged: counts summed, first
and last the extremes. A row counts the flow's packets in the whole file, so where the flow has
packets outside the window (its first or last time outside it) the row is ``approximate``: never
fewer than the window holds.

``src_*`` is the flow's lower endpoint as the index stores it (address, then port, ascending),
not the end that sent first: the index (version 1) does not record who sent first.

ICMP and ICMPv6 rows of the flow table hold every message between two hosts (ports 0); they are
split by message type and code as Community ID maps them (see ``engine.select``) by reading those
flows' records only, so each ICMP row has its ports and its Community ID.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import numpy as np

from . import dissect as d
from .communityid import community_digest, flow_ports, render
from .flow import Selection
from .flowfields import fill_slow_rows, flow_columns
from .formats import CaptureError, IncompleteHeader, PcapngCapture, open_capture
from .index import IndexUnusable
from .index.flows import flow_table
from .query import CaptureFile, _indexed_flows
from .recordtable import walk_pcap, walk_pcapng
from .select import ICMP_PROTOCOLS, SelectionMatcher, icmp_type_code

SORTS = {"first": ("first_ns", False), "last": ("last_ns", False), "-bytes": ("bytes", True)}
SORTS["-packets"] = ("packets", True)
ROW_DTYPE = np.dtype(
    [
        ("a_hi", "<u8"),
        ("a_lo", "<u8"),
        ("b_hi", "<u8"),
        ("b_lo", "<u8"),
        ("a_port", "<u2"),
        ("b_port", "<u2"),
        ("proto", "u1"),
        ("first_ns", "<i8"),
        ("last_ns", "<i8"),
        ("packets", "<u8"),
        ("bytes", "<u8"),
        ("approximate", "?"),
        ("community_id", "V20"),
    ]
)
KEY_FIELDS = ["a_hi", "a_lo", "b_hi", "b_lo", "a_port", "b_port", "proto"]


@dataclass(frozen=True)
class FlowRow:
    """One flow of a listing."""

    proto: int
    src_addr: str
    src_port: int
    dst_addr: str
    dst_port: int
    community_id: str
    first_ns: int
    last_ns: int
    packets: int
    bytes: int
    approximate: bool


@dataclass(frozen=True)
class FlowListing:
    rows: list[FlowRow]
    truncated: bool
    damaged: list[str]  # files that could not be read, named


def list_flows(
    files: Sequence[CaptureFile | str | os.PathLike],
    selection: Selection,
    *,
    sort: str = "first",
    limit: int = 1000,
) -> FlowListing:
    """The flows of ``selection`` over ``files``, merged across files, sorted, at most ``limit``."""
    m = SelectionMatcher(selection)
    parts, damaged = [], []
    for file in (f if isinstance(f, CaptureFile) else CaptureFile.at(f) for f in files):
        if file.span is not None and (file.span[1] < m.start_ns or file.span[0] > m.end_ns):
            continue
        try:
            parts.append(_file_rows(file, m))
        except (CaptureError, OSError) as exc:
            damaged.append(f"{file.path}: {exc}")
    rows = _merged(np.concatenate(parts) if parts else np.zeros(0, ROW_DTYPE))
    field, descending = SORTS[sort]
    keys = rows[field].astype(np.int64)
    order = np.lexsort((rows["b_lo"], rows["a_lo"], rows["first_ns"], -keys if descending else keys))
    chosen = rows[order[:limit]]
    return FlowListing([_row(r) for r in chosen], truncated=len(rows) > limit, damaged=damaged)


def _file_rows(file: CaptureFile, m: SelectionMatcher) -> np.ndarray:
    """The selected rows of one file's flow table, ICMP split by message; from its index when it has one."""
    index = file.index
    if index is not None and index.usable_for_queries:
        try:
            ids = _indexed_flows(index, m)
            table = index.flows[ids]
        except IndexUnusable:
            index = None
        else:
            return _rows(file, table, lambda i: index.packet_offsets(ids[i : i + 1]), m)
    table, offsets = _scanned_table(file)
    selected = np.flatnonzero(m.flow_rows(table)) if len(table) else np.zeros(0, np.int64)

    def offsets_of(i: int) -> np.ndarray:
        row = table[selected[i]]
        return offsets[int(row["start"]) : int(row["start"]) + int(row["packets"])]

    return _rows(file, table[selected], offsets_of, m)


def _scanned_table(file: CaptureFile) -> tuple[np.ndarray, np.ndarray]:
    """The flow table of a file without an index, built in memory exactly as the index build does."""
    try:
        capture = open_capture(file.path)
    except IncompleteHeader:
        return flow_table_empty()
    with capture:
        size = capture.size()
        mm = mmap.mmap(capture.fileno(), size, access=mmap.ACCESS_READ) if size else b""
        try:
            table = (
                walk_pcapng(capture) if isinstance(capture, PcapngCapture) else walk_pcap(capture, mm, size)
            )
            columns, slow_rows = flow_columns(mm, len(mm), table)
            fill_slow_rows(mm, table, columns, slow_rows)
            flows, offsets = flow_table(table, columns)
            return flows, np.array(offsets)
        finally:
            if isinstance(mm, mmap.mmap):
                mm.close()


def flow_table_empty() -> tuple[np.ndarray, np.ndarray]:
    from .index.flows import FLOW_DTYPE

    return np.zeros(0, FLOW_DTYPE), np.zeros(0, np.int64)


def _rows(file: CaptureFile, table: np.ndarray, offsets_of, m: SelectionMatcher) -> np.ndarray:
    """ROW_DTYPE rows from flow-table rows; ICMP rows replaced by their messages' flows."""
    icmp = np.isin(table["proto"], ICMP_PROTOCOLS)
    plain = table[~icmp]
    rows = np.zeros(len(plain), ROW_DTYPE)
    for name in ("a_hi", "a_lo", "b_hi", "b_lo", "a_port", "b_port", "proto", "first_ns", "last_ns"):
        rows[name] = plain[name]
    rows["packets"], rows["bytes"] = plain["packets"], plain["bytes"]
    rows["community_id"] = plain["community_id"]
    rows["approximate"] = (plain["first_ns"] < m.start_ns) | (plain["last_ns"] > m.end_ns)
    icmp_rows = [r for i in np.flatnonzero(icmp).tolist() for r in _icmp_rows(file, offsets_of(i), m)]
    if icmp_rows:
        rows = np.concatenate([rows, np.array(icmp_rows, dtype=ROW_DTYPE)])
    return rows


def _icmp_rows(file: CaptureFile, offsets: np.ndarray, m: SelectionMatcher) -> Iterator[tuple]:
    """The ICMP flows (by type/code ports) of the records at ``offsets``, those the selection takes."""
    found: dict[tuple, list] = {}
    wanted = sorted(int(o) for o in offsets)
    with open_capture(file.path) as capture:
        if isinstance(capture, PcapngCapture):
            if file.index is not None:
                capture.learn_blocks(file.index.meta_offsets)
                records = capture.records_at(wanted)
            else:  # interfaces not learned: a sequential read (ICMP in a live pcapng file only)
                at = set(wanted)
                records = (r for r in capture if r.offset in at)
        else:
            records = capture.records_at(wanted)
        for record in records:
            f = d.dissect(record.linktype, record.data)
            if f is None or f.later_fragment:
                continue  # a later fragment of an ICMP message: no type to file it by
            message = icmp_type_code(record.linktype, record.data)
            if message is None:
                continue
            sport, dport, one_way = flow_ports(f.proto, *message)
            src, dst = f.src, f.dst
            if not one_way and (dst < src or (dst == src and dport < sport)):
                src, sport, dst, dport = dst, dport, src, sport
            key = (src, sport, dst, dport, f.proto)
            entry = found.get(key)
            if entry is None:
                digest = community_digest(f.src, message[0], f.dst, message[1], f.proto)
                found[key] = [record.ts_ns, record.ts_ns, 1, record.orig_len, digest]
            else:
                entry[0], entry[1] = min(entry[0], record.ts_ns), max(entry[1], record.ts_ns)
                entry[2] += 1
                entry[3] += record.orig_len
    for (src, sport, dst, dport, proto), (first, last, packets, size, digest) in found.items():
        if last < m.start_ns or first > m.end_ns:
            continue
        if not m.selection.matches(src, sport, dst, dport, proto) or (m.digest not in (None, digest)):
            continue
        a_hi, a_lo = _halves(src)
        b_hi, b_lo = _halves(dst)
        approximate = first < m.start_ns or last > m.end_ns
        yield (a_hi, a_lo, b_hi, b_lo, sport, dport, proto, first, last, packets, size, approximate, digest)


def _halves(address: bytes) -> tuple[int, int]:
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def _merged(rows: np.ndarray) -> np.ndarray:
    """One row per flow: counts summed, first/last the extremes, approximate if any part is."""
    if len(rows) < 2:
        return rows
    order = np.lexsort(tuple(rows[name] for name in reversed(KEY_FIELDS)))
    rows = rows[order]
    keys = rows[KEY_FIELDS]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    merged = rows[starts].copy()
    merged["first_ns"] = np.minimum.reduceat(rows["first_ns"], starts)
    merged["last_ns"] = np.maximum.reduceat(rows["last_ns"], starts)
    merged["packets"] = np.add.reduceat(rows["packets"], starts)
    merged["bytes"] = np.add.reduceat(rows["bytes"], starts)
    merged["approximate"] = np.logical_or.reduceat(rows["approximate"], starts)
    return merged


def address_text(hi: int, lo: int) -> str:
    """A 16-byte address (two halves) as text; IPv4-mapped as IPv4."""
    packed = int(hi).to_bytes(8, "big") + int(lo).to_bytes(8, "big")
    if packed[:12] == d.V4_PREFIX:
        return str(IPv4Address(packed[12:]))
    return str(IPv6Address(packed))


def _row(r) -> FlowRow:
    return FlowRow(
        proto=int(r["proto"]),
        src_addr=address_text(r["a_hi"], r["a_lo"]),
        src_port=int(r["a_port"]),
        dst_addr=address_text(r["b_hi"], r["b_lo"]),
        dst_port=int(r["b_port"]),
        community_id=render(bytes(r["community_id"])),
        first_ns=int(r["first_ns"]),
        last_ns=int(r["last_ns"]),
        packets=int(r["packets"]),
        bytes=int(r["bytes"]),
        approximate=bool(r["approximate"]),
    )


__all__ = ["FlowListing", "FlowRow", "list_flows"]
