"""Listing the flows a Selection names in a window, from the files' flow tables (docs/SPEC.md "GET /flows").

An indexed file answers from its index's flow table: no packet record is read. A file without a
current index (the live file) gets the index it would have, built in memory
(``engine.index.build.index_in_memory``), so both give the same rows. Rows of one flow in several files are merged: counts summed, first
and last the extremes. A row counts the flow's packets in the whole file, so where the flow has
packets outside the window (its first or last time outside it) the row is ``approximate``: never
fewer than the window holds.

``src_*`` is the end that sent the flow's first packet (the index records it, ``b_first``); for
a flow seen in several files, in the earliest of them.

The rows are merged, sorted and cut at the limit as numpy rows; only the rows returned get their
text (addresses, ``engine.flows.text``) and their Community ID (``community_digests``), all at once,
as columns (``FlowColumns``) that an answer is written from.

ICMP and ICMPv6 rows of the flow table hold every message between two hosts (ports 0); they are
split by message type and code as Community ID maps them (see ``engine.selection.match``), so each ICMP row
has its ports and its Community ID: from the index's ICMP columns (version 4,
``engine.index.icmp``; no record is read, an archived capture asks nothing of the archive), or,
for an index of version 3, by reading those flows' records.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from ..dissection.communityid import DIGEST_SIZE, community_digests, render_many
from ..formats import CaptureError, IncompleteHeader, PcapngCapture, open_capture
from ..index import FlowIndex, IndexUnusable
from ..index.build import index_in_memory
from ..query.plan import CaptureFile
from ..selection.match import SelectionMatcher, is_icmp
from ..selection.selectors import Selection
from .rows import KEY_FIELDS, ROW_DTYPE, FileDamage, FlowColumns, FlowListing, FlowRow
from .text import address_texts

SORTS = {"first": ("first_ns", False), "last": ("last_ns", False), "-bytes": ("bytes", True)}
SORTS["-packets"] = ("packets", True)


def list_flows(
    files: Sequence[CaptureFile | str | os.PathLike],
    selection: Selection,
    *,
    sort: str = "first",
    limit: int = 1000,
) -> FlowListing:
    """The flows of ``selection`` over ``files``, merged across files, sorted, at most ``limit``.

    Damaged files are named in ``damaged``, as ``/data.pcap`` names them: a file damaged part-way
    answers from the records before its damage (its index records where, or, without one, the
    index built in memory); one that cannot be read adds no row.
    """
    m = SelectionMatcher(selection)
    parts: list[np.ndarray] = []
    damaged: list[FileDamage] = []
    for file in (f if isinstance(f, CaptureFile) else CaptureFile.at(f) for f in files):
        if file.excluded or (
            file.span is not None and (file.span[1] < m.start_ns or file.span[0] > m.end_ns)
        ):
            continue
        path = os.fspath(file.path)
        try:
            rows, index = _file_rows(file, m)
        except (CaptureError, OSError) as exc:
            damaged.append(FileDamage(path, str(exc)))
            continue
        parts.append(rows)
        if index is not None and index.damaged_at is not None:
            at = index.damaged_at
            damaged.append(FileDamage(path, f"{path}: read up to its damage at byte offset {at}"))
    rows = _merged(np.concatenate(parts) if parts else np.zeros(0, ROW_DTYPE))
    field, descending = SORTS[sort]
    keys = rows[field].astype(np.int64)
    order = np.lexsort((rows["b_lo"], rows["a_lo"], rows["first_ns"], -keys if descending else keys))
    histogram = bytes_over_time(rows["first_ns"], rows["last_ns"], rows["bytes"], m.start_ns, m.end_ns)
    return FlowListing(
        _columns(rows[order[:limit]]), truncated=len(rows) > limit, damaged=damaged, histogram=histogram
    )


HISTOGRAM_BINS = 60


def bytes_over_time(
    first_ns: np.ndarray, last_ns: np.ndarray, nbytes: np.ndarray, start_ns: int, end_ns: int
) -> list[int]:
    """Each flow's bytes spread evenly over its first..last packet within start..end, summed in
    HISTOGRAM_BINS equal slices of the window (as the page draws listed flows); a flow of one
    instant counts whole in its slice. The slices add up to every flow's bytes.

    Computed as the bytes carried up to each slice's edge: one pass over the flows per edge.
    """
    span = max(end_ns - start_ns, 1)
    first = np.clip(first_ns.astype(np.float64), start_ns, end_ns)
    last = np.clip(last_ns.astype(np.float64), first, end_ns)
    duration = np.maximum(last - first, 1.0)
    weight = nbytes.astype(np.float64)
    edges = [start_ns + span * i / HISTOGRAM_BINS for i in range(1, HISTOGRAM_BINS)]
    carried = [0.0] + [float(np.sum(weight * np.clip((e - first) / duration, 0.0, 1.0))) for e in edges]
    carried.append(float(np.sum(weight)))
    return [int(b) for b in np.diff(np.rint(carried).astype(np.int64))]  # whole bytes, adding up


def _file_rows(file: CaptureFile, m: SelectionMatcher) -> tuple[np.ndarray, FlowIndex | None]:
    """The selected rows of one file's flow table, ICMP split by message, and the index they come from.

    From the file's index when it has a current one, else from the one it would get, built in
    memory up to any damage (the index says where).
    """
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
            return np.zeros(0, ROW_DTYPE), None
        ids = index.selected(m.lookup, m.flow_rows)
    return _rows(file, index, ids, index.rows(ids), m), index


def _rows(
    file: CaptureFile, index: FlowIndex, ids: np.ndarray, table: np.ndarray, m: SelectionMatcher
) -> np.ndarray:
    """ROW_DTYPE rows from flow-table rows; ICMP rows replaced by their messages' flows.

    The Community ID digests of the other rows are left out: ``_columns`` computes them for the
    rows a listing returns only.
    """
    icmp = is_icmp(table["proto"])
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
    rows["approximate"] = (plain["first_ns"] < m.start_ns) | (plain["last_ns"] > m.end_ns)
    icmp_ids = ids[icmp]
    if not len(icmp_ids):
        return rows
    if "icmpflow" in index.columns:  # an index of version 4 keeps them: no record is read
        found = _indexed_icmp_rows(index, icmp_ids, table[icmp], m)
    else:  # the messages of every ICMP flow of the file, in one pass over their records
        found = np.array(list(_icmp_rows(file, index, index.packet_offsets(icmp_ids), m)), dtype=ROW_DTYPE)
    return np.concatenate([rows, found]) if len(found) else rows


def _indexed_icmp_rows(
    index: FlowIndex, ids: np.ndarray, parents: np.ndarray, m: SelectionMatcher
) -> np.ndarray:
    """The message flows of the ICMP flow-table rows ``ids`` (``parents``: those rows) from the
    index's ICMP columns (``engine.index.icmp``), those the selection takes: what ``_icmp_rows``
    finds in the records."""
    from ..index.icmp import DST_FIRST, SRC_IS_B

    c = index.columns
    flow = c["icmpflow"].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order].astype(np.int64)
    at = np.searchsorted(sorted_ids, flow)
    taken = (at < len(sorted_ids)) & (sorted_ids[np.minimum(at, len(sorted_ids) - 1)] == flow)
    pick = np.flatnonzero(taken)
    if not len(pick):
        return np.zeros(0, ROW_DTYPE)
    p = parents[order[at[pick]]]
    bits = c["icmpbits"][pick]
    src_is_b = (bits & SRC_IS_B) != 0
    rows = np.zeros(len(pick), ROW_DTYPE)
    for end, this, other in (("a", "a", "b"), ("b", "b", "a")):
        for half in ("_hi", "_lo"):
            rows[end + half] = np.where(src_is_b, p[other + half], p[this + half])
    rows["a_port"], rows["b_port"] = c["icmpsprt"][pick], c["icmpdprt"][pick]
    rows["proto"] = p["proto"]
    rows["first_ns"], rows["last_ns"] = c["icmpfrst"][pick], c["icmplast"][pick]
    rows["packets"], rows["bytes"] = c["icmppkts"][pick], c["icmpbyts"][pick]
    rows["b_first"] = (bits & DST_FIRST) != 0
    rows["community_id"] = c["icmpcid"].reshape(-1, DIGEST_SIZE)[pick].copy().view(f"V{DIGEST_SIZE}").ravel()
    rows["approximate"] = (rows["first_ns"] < m.start_ns) | (rows["last_ns"] > m.end_ns)
    keep = (rows["last_ns"] >= m.start_ns) & (rows["first_ns"] <= m.end_ns)
    for i in np.flatnonzero(keep).tolist():
        r = rows[i]
        src = int(r["a_hi"]).to_bytes(8, "big") + int(r["a_lo"]).to_bytes(8, "big")
        dst = int(r["b_hi"]).to_bytes(8, "big") + int(r["b_lo"]).to_bytes(8, "big")
        if not m.selection.matches(src, int(r["a_port"]), dst, int(r["b_port"]), int(r["proto"])) or (
            m.digest not in (None, bytes(r["community_id"]))
        ):
            keep[i] = False
    return rows[keep]


def _icmp_rows(
    file: CaptureFile, index: FlowIndex, offsets: np.ndarray, m: SelectionMatcher
) -> Iterator[tuple]:
    """The ICMP flows (by type/code ports) of the records at ``offsets``, those the selection takes."""
    from ..index.icmp import message_flows

    wanted = sorted(int(o) for o in offsets)
    with open_capture(file.path) as capture:
        if isinstance(capture, PcapngCapture):
            capture.learn_blocks(index.meta_offsets)
        records = capture.records_at(wanted)
        found = message_flows((r.linktype, r.ts_ns, r.orig_len, r.data) for r in records)
    for key, (first, last, packets, size, digest, first_sender) in found.items():
        src, sport, dst, dport, proto = key
        if last < m.start_ns or first > m.end_ns:
            continue
        if not m.selection.matches(src, sport, dst, dport, proto) or (m.digest not in (None, digest)):
            continue
        a_hi, a_lo = _halves(src)
        b_hi, b_lo = _halves(dst)
        approximate = first < m.start_ns or last > m.end_ns
        # the lower end first, as the table folds flows; b_first says who sent first
        b_first = first_sender != src
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


def _columns(rows: np.ndarray) -> FlowColumns:
    """The listing's rows as columns: ``src_*`` the end that sent first, addresses and Community IDs as text.

    The Community ID of a row that is not ICMP is computed here, from its ends, for these rows only
    (an ICMP row's comes with it, from its messages).
    """
    b_first = rows["b_first"]
    src_hi, dst_hi = (
        np.where(b_first, rows["b_hi"], rows["a_hi"]),
        np.where(b_first, rows["a_hi"], rows["b_hi"]),
    )
    src_lo, dst_lo = (
        np.where(b_first, rows["b_lo"], rows["a_lo"]),
        np.where(b_first, rows["a_lo"], rows["b_lo"]),
    )
    src_port = np.where(b_first, rows["b_port"], rows["a_port"])
    dst_port = np.where(b_first, rows["a_port"], rows["b_port"])
    texts = address_texts(np.concatenate([src_hi, dst_hi]), np.concatenate([src_lo, dst_lo]))
    digests = np.ascontiguousarray(rows["community_id"]).view(np.uint8).reshape(-1, DIGEST_SIZE).copy()
    hashed = ~is_icmp(rows["proto"])
    if hashed.any():
        r = rows[hashed]
        digests[hashed] = community_digests(
            r["a_hi"], r["a_lo"], r["a_port"], r["b_hi"], r["b_lo"], r["b_port"], r["proto"]
        )
    n = len(rows)
    return FlowColumns(
        proto=rows["proto"].tolist(),
        src_addr=texts[:n],
        src_port=src_port.tolist(),
        dst_addr=texts[n:],
        dst_port=dst_port.tolist(),
        community_id=render_many(digests),
        first_ns=rows["first_ns"].tolist(),
        last_ns=rows["last_ns"].tolist(),
        packets=rows["packets"].tolist(),
        bytes=rows["bytes"].tolist(),
        approximate=rows["approximate"].tolist(),
    )


__all__ = ["FileDamage", "FlowColumns", "FlowListing", "FlowRow", "list_flows"]
