"""The lookups of an open index: flow rows, flows by address, port, Community ID, protocol and
time, each a binary search over a sorted column that touches a few pages of the mapping.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable

import numpy as np

from ..dissection.communityid import community_digests, parse_community_id
from ..dissection.fields import address_halves
from ..dissection.packet import ICMP_PROTOCOLS
from ..selection.match import is_icmp
from .columns import FEW_ROWS, IndexColumns, IntColumn
from .format import IndexUnusable

# A flow row as the readers see it (the table's columns widened, addresses as 16 bytes in halves).
ROW_DTYPE = np.dtype(
    [
        ("a_hi", "<u8"),
        ("a_lo", "<u8"),
        ("b_hi", "<u8"),
        ("b_lo", "<u8"),
        ("first_ns", "<i8"),
        ("last_ns", "<i8"),
        ("bytes", "<u8"),
        ("packets", "<u8"),
        ("a_port", "<u2"),
        ("b_port", "<u2"),
        ("proto", "u1"),
        ("b_first", "?"),  # the b end sent the flow's first packet
        ("community_id", "V20"),  # the Community ID digest, when asked for (zeros otherwise)
    ]
)
V4_BLOCK = (0xFFFF << 32, (0xFFFF << 32) | 0xFFFFFFFF)  # the low halves of ::ffff:0.0.0.0/96
# Selections whose flow ids an open index keeps (``FlowIndex.selected``), and how many ids at most.
SELECTIONS_KEPT = 8
SELECTION_KEPT_IDS = 4096


class FlowLookups(IndexColumns):
    """The flow table's rows and lookups (the part of ``engine.index.opening.FlowIndex`` that finds flows)."""

    _selections: dict[tuple, np.ndarray]
    _mapped: bool | None  # see _v6_mapped

    def rows(self, ids: np.ndarray, digests: bool = False) -> np.ndarray:
        """The flow rows ``ids`` (ROW_DTYPE); with ``digests``, their Community ID digests too (not ICMP's)."""
        ids = self._checked(ids)
        rows = self._few_rows(ids.tolist()) if len(ids) <= FEW_ROWS else self._many_rows(ids)
        if digests:
            hashed = ~is_icmp(rows["proto"])
            r = rows[hashed]
            found = community_digests(
                r["a_hi"], r["a_lo"], r["a_port"], r["b_hi"], r["b_lo"], r["b_port"], r["proto"]
            )
            rows["community_id"][hashed] = found.view(f"V{found.shape[1]}").ravel()
        return rows

    def _few_rows(self, ids: list[int]) -> np.ndarray:
        """``rows`` of a few flows, read one value at a time (numpy's cost per call is more here)."""
        v, n4, unit, base = self._view, self.n_v4, self.header.time_unit, self.first_ns
        first, last, nbytes, packets = v("first"), v("last"), v("bytes"), v("packets")
        aport, bport, proto, flags = v("aport"), v("bport"), v("proto"), v("flags")
        table = []
        for i in ids:
            if i < n4:
                ends = (0, v("a4")[i] | V4_BLOCK[0], 0, v("b4")[i] | V4_BLOCK[0])
            else:
                j = i - n4
                ends = (v("a6hi")[j], v("a6lo")[j], v("b6hi")[j], v("b6lo")[j])
            times = (first[i] * unit + base, last[i] * unit + base)
            table.append(
                (*ends, *times, nbytes[i], packets[i], aport[i], bport[i], proto[i], flags[i] & 1, b"")
            )
        try:
            return np.array(table, dtype=ROW_DTYPE)
        except OverflowError:
            raise IndexUnusable(f"{self.path}: a flow row out of range") from None

    def _many_rows(self, ids: np.ndarray) -> np.ndarray:
        c, n4 = self.columns, self.n_v4
        rows = np.zeros(len(ids), dtype=ROW_DTYPE)
        v4 = ids < n4
        i4, i6 = ids[v4], ids[~v4] - n4
        for end in ("a", "b"):
            rows[end + "_lo"][v4] = c[end + "4"][i4].astype(np.uint64) | np.uint64(V4_BLOCK[0])
            rows[end + "_hi"][~v4] = c[end + "6hi"][i6]
            rows[end + "_lo"][~v4] = c[end + "6lo"][i6]
        unit = self.header.time_unit
        rows["first_ns"] = c["first"][ids].astype(np.int64) * unit + self.first_ns
        rows["last_ns"] = c["last"][ids].astype(np.int64) * unit + self.first_ns
        rows["bytes"], rows["packets"] = c["bytes"][ids], c["packets"][ids]
        rows["a_port"], rows["b_port"], rows["proto"] = c["aport"][ids], c["bport"][ids], c["proto"][ids]
        rows["b_first"] = c["flags"][ids] & 1
        return rows

    @property
    def flows(self) -> np.ndarray:
        """Every row of the flow table with its Community ID digest (materialised: ``rows`` is cheaper)."""
        return self.rows(np.arange(self.n_flows), digests=True)

    def estimate(self, ids: np.ndarray) -> tuple[int, int]:
        """(packets, bytes) the flows ``ids`` hold in the whole file: an upper bound for any window."""
        ids = self._checked(ids)
        if len(ids) <= FEW_ROWS:
            packets, nbytes, few = self._view("packets"), self._view("bytes"), ids.tolist()
            return sum(packets[i] for i in few), sum(nbytes[i] for i in few)
        c = self.columns
        return int(c["packets"][ids].sum(dtype=np.uint64)), int(c["bytes"][ids].sum(dtype=np.uint64))

    def address_flows(self, first: bytes, last: bytes) -> np.ndarray:
        """Ids of the flows with an end in the 16-byte address range [first, last] (sorted, unique)."""
        first_v, last_v = address_halves(first), address_halves(last)
        parts = []
        c, n4 = self.columns, self.n_v4
        if first_v <= (0, V4_BLOCK[1]) and last_v >= (0, V4_BLOCK[0]):
            low = 0 if first_v < (0, V4_BLOCK[0]) else first_v[1] & 0xFFFFFFFF
            high = 0xFFFFFFFF if last_v > (0, V4_BLOCK[1]) else last_v[1] & 0xFFFFFFFF
            ends4 = (self._view("a4"), self._view("b4"))

            def key4(entry: int) -> int:
                return ends4[entry & 1][entry >> 1]

            parts.append(_run(c["byaddr4"], self._view("byaddr4"), key4, low, high))
        v4_only = first_v >= (0, V4_BLOCK[0]) and last_v <= (0, V4_BLOCK[1])
        if self.n_flows > n4 and not (v4_only and not self._v6_mapped()):
            parts.append(self._entries6(first_v, last_v))
        entries = (
            np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.zeros(0, dtype=np.uint32)
        )
        if len(entries) <= 64:  # a host's few flows: no numpy sort for them
            return np.array(sorted({entry >> 1 for entry in entries.tolist()}), dtype=np.int64)
        return np.unique(entries >> 1)

    def _entries6(self, first_v: tuple[int, int], last_v: tuple[int, int]) -> np.ndarray:
        """The ``byaddr6`` entries (IPv6 flow ends) with an address in [first_v, last_v] (halves)."""
        n4 = self.n_v4
        hi = (self._view("a6hi"), self._view("b6hi"))
        lo = (self._view("a6lo"), self._view("b6lo"))

        def key6(entry: int) -> tuple[int, int]:
            row, end = (entry >> 1) - n4, entry & 1
            if row < 0:
                raise IndexError(row)  # a negative index would read from the end
            return hi[end][row], lo[end][row]

        return _run(self.columns["byaddr6"], self._view("byaddr6"), key6, first_v, last_v)

    def _v6_mapped(self) -> bool:
        """Whether an IPv6 flow has an end in ::ffff:0:0/96: else an IPv4 range need not look at them."""
        if self._mapped is None:
            self._mapped = bool(len(self._entries6((0, V4_BLOCK[0]), (0, V4_BLOCK[1]))))
        return self._mapped

    def port_flows(self, port: int) -> np.ndarray:
        """Ids of the flows with ``port`` at either end (sorted, unique)."""
        ports = (self._view("aport"), self._view("bport"))

        def key(entry: int) -> int:
            return ports[entry & 1][entry >> 1]

        return np.unique(_run(self.columns["byport"], self._view("byport"), key, port, port) >> 1)

    def community_flows(self, digest: bytes) -> np.ndarray:
        """Ids of the flows whose Community ID prefix is ``digest``'s, and the ICMP flows (decided per packet)."""
        prefix = int.from_bytes(digest[:2], "big")
        cid, n4 = self.columns["cid"], self.n_v4
        parts = []
        for start, stop in ((0, n4), (n4, self.n_flows)):
            family = cid[start:stop]
            left, right = family.searchsorted(prefix, "left"), family.searchsorted(prefix, "right")
            parts.append(np.arange(start + left, start + right))
        parts.append(np.flatnonzero(np.isin(self.columns["proto"], ICMP_PROTOCOLS)))
        return np.unique(np.concatenate(parts))

    def in_window(self, ids: np.ndarray, start_ns: int, end_ns: int) -> np.ndarray:
        """The flows of ``ids`` with packets possibly in [start_ns, end_ns] (by their first and last times)."""
        unit, base = self.header.time_unit, self.first_ns
        if len(ids) <= FEW_ROWS:
            first_of, last_of = self._view("first"), self._view("last")
            kept = [
                i
                for i in ids.tolist()
                if last_of[i] * unit + base >= start_ns and first_of[i] * unit + base <= end_ns
            ]
            return np.array(kept, dtype=ids.dtype)
        c = self.columns
        first = c["first"][ids].astype(np.int64) * unit + base
        last = c["last"][ids].astype(np.int64) * unit + base
        return ids[(last >= start_ns) & (first <= end_ns)]

    def candidates(self, selection) -> np.ndarray:
        """Ids of the flows that may hold packets of ``selection`` (an ``engine.selection.selectors.Selection``).

        The narrowest lookup the selection allows (a Community ID, the smaller of its address
        ranges, the smaller of its ports, its protocol) gives the candidates, then their times are
        checked; the caller confirms each row (and ICMP packets one by one).
        """
        if self.records == 0 or self.last_ns < selection.start_ns or self.first_ns > selection.end_ns:
            return np.zeros(0, dtype=np.int64)
        found = None
        if getattr(selection, "community_id", None) is not None:
            found = self.community_flows(parse_community_id(selection.community_id))
        else:
            for bounds in sorted(
                (b for b in (selection.src_range, selection.dst_range) if b is not None),
                key=lambda b: b[1] > b[0],  # a single address first: it is the narrowest
            ):
                found = self.address_flows(*bounds)
                break
            if found is None:
                ports = [p for p in (selection.src_port, selection.dst_port) if p is not None]
                if ports:
                    found = min((self.port_flows(p) for p in ports), key=len)
                elif selection.proto is not None:
                    found = np.flatnonzero(self.columns["proto"] == selection.proto)
        if found is None:
            found = np.arange(self.n_flows)
        ids = self._checked(found)
        return self.in_window(ids, selection.start_ns, selection.end_ns)

    def selected(self, selection, confirm: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Ids of the flows of ``selection``: ``candidates`` by binary search, then ``confirm(rows)``.

        ``confirm`` takes the candidates' rows (ROW_DTYPE, with Community ID digests when the
        selection names one) and returns a boolean mask of those that match: the selection's own
        rules (``engine.selection.match``), applied to a few rows instead of the whole table.

        The answer is kept for the index's last few selections (an estimate and the answer it
        precedes ask the same), when ``confirm`` is a method of an object hashed by what it decides
        (``SelectionMatcher``); the index never changes once open, so neither can the answer.
        """
        key = _selection_key(selection, confirm)
        try:
            kept = self._selections.get(key) if key is not None else None
        except TypeError:  # a selection that cannot be hashed
            key = kept = None
        if kept is not None:
            return kept
        ids = self.candidates(selection)
        if len(ids):
            rows = self.rows(ids, digests=getattr(selection, "community_id", None) is not None)
            ids = ids[np.asarray(confirm(rows), dtype=bool)]
        return self._keep(key, ids) if key is not None else ids

    def find(
        self,
        a: bytes | None = None,
        a_port: int | None = None,
        b: bytes | None = None,
        b_port: int | None = None,
        protocols: tuple[int, ...] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> np.ndarray:
        """Ids of the flows between endpoint (a, a_port) and (b, b_port), either way; None = any value.

        An address (else a port) is looked up by binary search; the other fields are then checked
        on those candidate rows only. The answer is kept like ``selected``'s (an estimate and the
        answer it precedes ask the same).
        """
        key = ("find", a, a_port, b, b_port, protocols, start_ns, end_ns)
        kept = self._selections.get(key)
        if kept is None:
            kept = self._keep(key, self._found(a, a_port, b, b_port, protocols, start_ns, end_ns))
        return kept

    def _keep(self, key: tuple, ids: np.ndarray) -> np.ndarray:
        """``ids`` kept as the answer to ``key`` (among the last SELECTIONS_KEPT), when few enough."""
        if len(ids) <= SELECTION_KEPT_IDS:
            ids.flags.writeable = False  # shared by every caller asking the same
            if len(self._selections) >= SELECTIONS_KEPT:
                self._selections.clear()
            self._selections[key] = ids
        return ids

    def _found(
        self,
        a: bytes | None,
        a_port: int | None,
        b: bytes | None,
        b_port: int | None,
        protocols: tuple[int, ...] | None,
        start_ns: int | None,
        end_ns: int | None,
    ) -> np.ndarray:
        address = a if a is not None else b
        port = a_port if a_port is not None else b_port
        if address is not None:
            ids = self.address_flows(address, address)
        elif port is not None:
            ids = self.port_flows(port)
        else:
            ids = np.arange(self.n_flows)
        ids = self._checked(ids)
        if start_ns is not None or end_ns is not None:
            ids = self.in_window(
                ids,
                start_ns if start_ns is not None else -(2**63),
                end_ns if end_ns is not None else 2**63 - 1,
            )
        if not len(ids):
            return ids
        if len(ids) <= FEW_ROWS:
            return self._few_found(ids.tolist(), a, a_port, b, b_port, protocols)
        rows = self.rows(ids)
        keep = _side(rows, "a", a, a_port) & _side(rows, "b", b, b_port)
        keep |= _side(rows, "b", a, a_port) & _side(rows, "a", b, b_port)
        if protocols is not None:
            keep &= np.isin(rows["proto"], protocols)
        return ids[keep]

    def _few_found(
        self,
        ids: list[int],
        a: bytes | None,
        a_port: int | None,
        b: bytes | None,
        b_port: int | None,
        protocols: tuple[int, ...] | None,
    ) -> np.ndarray:
        """``find``'s check of a few candidate flows, on their values one at a time (same rules)."""
        v, n4 = self._view, self.n_v4
        a_end = address_halves(a) if a is not None else None
        b_end = address_halves(b) if b is not None else None
        aport, bport, proto = v("aport"), v("bport"), v("proto")

        def side(
            end: tuple[int, int], port: int, want: tuple[int, int] | None, want_port: int | None
        ) -> bool:
            return (want is None or end == want) and (want_port is None or port == want_port)

        kept = []
        for i in ids:
            if i < n4:
                ea, eb = (0, v("a4")[i] | V4_BLOCK[0]), (0, v("b4")[i] | V4_BLOCK[0])
            else:
                j = i - n4
                ea, eb = (v("a6hi")[j], v("a6lo")[j]), (v("b6hi")[j], v("b6lo")[j])
            pa, pb = aport[i], bport[i]
            forward = side(ea, pa, a_end, a_port) and side(eb, pb, b_end, b_port)
            if (forward or (side(eb, pb, a_end, a_port) and side(ea, pa, b_end, b_port))) and (
                protocols is None or proto[i] in protocols
            ):
                kept.append(i)
        return np.array(kept, dtype=np.int64)


def _selection_key(selection, confirm) -> tuple | None:
    """What identifies ``selected(selection, confirm)``'s answer; None when it cannot be kept.

    Only a bound method of an object compared by value (as ``SelectionMatcher``s of one Selection
    are) is kept, as its function and its object: equal objects decide alike. A plain function
    may read state of its own, and an object compared by identity is new at every call.
    """
    owner = getattr(confirm, "__self__", None)
    if owner is None or type(owner).__hash__ is object.__hash__:
        return None
    return (selection, getattr(confirm, "__func__", confirm), owner)


def _run(entries: np.ndarray, view: IntColumn, key, low, high) -> np.ndarray:
    """The entries whose key (``key(entry)``; entries sorted by it) lies in [low, high]: two bisections.

    ``view`` is ``entries`` as Python ints (``FlowIndex._view``), which the bisections read.
    """
    try:
        return entries[bisect_left(view, low, key=key) : bisect_right(view, high, key=key)]
    except IndexError:
        raise IndexUnusable("an address lookup names a flow that is not there") from None


def _side(rows: np.ndarray, side: str, address: bytes | None, port: int | None) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    if address is not None:
        hi, lo = address_halves(address)
        keep &= (rows[side + "_hi"] == np.uint64(hi)) & (rows[side + "_lo"] == np.uint64(lo))
    if port is not None:
        keep &= rows[side + "_port"] == port
    return keep
