"""Listing the flows a Selection names in a window, from the files' flow tables (SPEC "GET /flows").

An indexed file answers from its index's flow table: no packet record is read. A file without a
current index (the live file) gets the index it would have, built in memory
(``engine.index.build.index_in_memory``), so both give the same rows. Rows of one flow in several files are merged: counts summed, first
and last the extremes. A row counts the flow's packets in the whole file, so where the flow has
packets outside the window (its first or last time outside it) the row is ``approximate``: never
fewer than the window holds.

``src_*`` is the end that sent the flow's first packet (the index records it, ``b_first``); for
a flow seen in several files, in the earliest of them.

ICMP and ICMPv6 rows of the flow table hold every message between two hosts (ports 0); they are
split by message type and code as Community ID maps them (see ``engine.select``) by reading those
flows' records only, so each ICMP row has its ports and its Community ID.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import numpy as np

from . import dissect as d
from .communityid import community_digest, flow_ports, render
from .flow import Selection
from .formats import CaptureError, IncompleteHeader, PcapngCapture, open_capture
from .index import FlowIndex, IndexUnusable
from .index.build import index_in_memory
from .query import CaptureFile
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
        ("b_first", "?"),  # the b end sent the flow's first packet
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
    if index is None or not index.usable_for_queries:
        index = None
    else:
        try:
            ids = index.selected(m.lookup, m.flow_rows)
        except IndexUnusable:
            index = None
    if index is None:  # no current index (the live file): the one it would get, built in memory
        try:
            index = index_in_memory(file.path)
        except IncompleteHeader:
            return np.zeros(0, ROW_DTYPE)
        ids = index.selected(m.lookup, m.flow_rows)
    table = index.rows(ids, digests=True)
    return _rows(file, index, ids, table, m)


def _rows(
    file: CaptureFile, index: FlowIndex, ids: np.ndarray, table: np.ndarray, m: SelectionMatcher
) -> np.ndarray:
    """ROW_DTYPE rows from flow-table rows; ICMP rows replaced by their messages' flows."""
    icmp = np.isin(table["proto"], ICMP_PROTOCOLS)
    plain = table[~icmp]
    rows = np.zeros(len(plain), ROW_DTYPE)
    for name in (
        "a_hi",
        "a_lo",
        "b_hi",
        "b_lo",
        "a_port",
        "b_port",
        "proto",
        "first_ns",
        "last_ns",
        "b_first",
    ):
        rows[name] = plain[name]
    rows["packets"], rows["bytes"] = plain["packets"], plain["bytes"]
    rows["community_id"] = plain["community_id"]
    rows["approximate"] = (plain["first_ns"] < m.start_ns) | (plain["last_ns"] > m.end_ns)
    icmp_ids = ids[icmp]
    icmp_rows = [
        r for i in icmp_ids.tolist() for r in _icmp_rows(file, index, index.packet_offsets(np.array([i])), m)
    ]
    if icmp_rows:
        rows = np.concatenate([rows, np.array(icmp_rows, dtype=ROW_DTYPE)])
    return rows


def _icmp_rows(
    file: CaptureFile, index: FlowIndex, offsets: np.ndarray, m: SelectionMatcher
) -> Iterator[tuple]:
    """The ICMP flows (by type/code ports) of the records at ``offsets``, those the selection takes."""
    found: dict[tuple, list] = {}
    sender: dict[tuple, bytes] = {}  # who sent each ICMP flow's first message
    wanted = sorted(int(o) for o in offsets)
    with open_capture(file.path) as capture:
        if isinstance(capture, PcapngCapture):
            capture.learn_blocks(index.meta_offsets)
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
                sender[key] = f.src
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
        # the lower end first, as the table folds flows; b_first says who sent first
        b_first = sender[key] != src
        yield (
            a_hi,
            a_lo,
            b_hi,
            b_lo,
            sport,
            dport,
            proto,
            first,
            last,
            packets,
            size,
            approximate,
            b_first,
            digest,
        )


def _halves(address: bytes) -> tuple[int, int]:
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def _merged(rows: np.ndarray) -> np.ndarray:
    """One row per flow: counts summed, first/last the extremes, approximate if any part is."""
    if len(rows) < 2:
        return rows
    # by flow, and in a flow the earliest part first: its b_first says who sent first
    order = np.lexsort((rows["first_ns"], *(rows[name] for name in reversed(KEY_FIELDS))))
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
    src, dst = ("b", "a") if r["b_first"] else ("a", "b")
    return FlowRow(
        proto=int(r["proto"]),
        src_addr=address_text(r[src + "_hi"], r[src + "_lo"]),
        src_port=int(r[src + "_port"]),
        dst_addr=address_text(r[dst + "_hi"], r[dst + "_lo"]),
        dst_port=int(r[dst + "_port"]),
        community_id=render(bytes(r["community_id"])),
        first_ns=int(r["first_ns"]),
        last_ns=int(r["last_ns"]),
        packets=int(r["packets"]),
        bytes=int(r["bytes"]),
        approximate=bool(r["approximate"]),
    )


__all__ = ["FlowListing", "FlowRow", "list_flows"]
