"""Reading a flow index: the header checked on open, the tables looked up in a read-only mapping.

The format and the rule for when an index answers for its capture are in ``engine.index.format``.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import sys
import threading
import zlib
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable
from typing import NoReturn, Protocol

import numpy as np

from ..communityid import community_digests, parse_community_id
from ..flowfields import address_halves
from ..formats.archived import ArchiveRecord
from ..formats.source import ARCHIVED_SUFFIX, capture_name, open_source
from ..select import is_icmp
from .flows import ICMP_PROTOCOLS
from .format import (
    COLUMN,
    DIGEST_SPAN,
    FLAG_DAMAGED,
    FLAG_PCAPNG,
    FLAG_SIMPLE_BLOCKS,
    HEADER_SIZE,
    INDEX_SUFFIX,
    OFFSET_GROUP,
    IndexDamaged,
    IndexUnusable,
    decode_column,
    decode_header,
    decode_varints,
    header_checksum,
)

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
OPEN_INDEXES = 4096
# Selections whose flow ids an open index keeps (``FlowIndex.selected``), and how many ids at most.
SELECTIONS_KEPT = 8
SELECTION_KEPT_IDS = 4096


class IntColumn(Protocol):
    """A column read as Python ints, one at a time (``FlowIndex._view``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, at: int, /) -> int: ...


# Up to this many flow rows are read one value at a time (``FlowIndex.rows``).
FEW_ROWS = 16
# A flow's offsets are decoded in plain Python when its group of flows holds at most this many bytes.
FEW_OFFSET_BYTES = 256
# more flows than this asked of a file: the groups of offsets holding them are decoded at once
GROUPS_FROM = 4
# bytes.translate table marking the last byte of each varint (below 0x80) as b"e"
_VARINT_LAST_BYTES = bytes(b"e"[0] if byte < 0x80 else b"."[0] for byte in range(256))
# memoryview formats of the unsigned column types, on a little-endian machine (the index's order).
_VIEW_CODES = {"<u2": "H", "<u4": "I", "<u8": "Q", "|u1": "B"}
_OPEN: OrderedDict[str, tuple[tuple, FlowIndex]] = OrderedDict()
_OPEN_LOCK = threading.Lock()
# Indexes found damaged (capture path -> the files' signature then): not opened again, nor reported
# again, until one of the files changes (``reindex`` rebuilds it).
_DAMAGED: dict[str, tuple] = {}
DAMAGED_KEPT = 4096
_DAMAGE_LISTENERS: list[Callable[[str, str], None]] = []


def on_damaged_index(listener: Callable[[str, str], None]) -> None:
    """Call ``listener(index path, problem)`` once per damaged index found (a checksum that fails).

    The node logs and counts them (``node.apps``); the query scans the capture instead.
    """
    if listener not in _DAMAGE_LISTENERS:
        _DAMAGE_LISTENERS.append(listener)


def _report_damage(path: str, problem: str) -> None:
    for listener in list(_DAMAGE_LISTENERS):
        listener(path, problem)


class _CheckedColumns:
    """An index's columns by name, each checked against its CRC-32 the first time it is read."""

    def __init__(self, owner: FlowIndex, columns: dict[str, np.ndarray], crcs: dict[str, int]):
        self._owner, self._columns, self._crcs = owner, columns, crcs
        self._checked: set[str] = set()

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __getitem__(self, name: str) -> np.ndarray:
        column = self._columns[name]
        if name not in self._checked:
            if zlib.crc32(column.data) != self._crcs[name]:
                self._owner.damaged(f"column {name} does not match its checksum")
            self._checked.add(name)
        return column

    def check_all(self) -> None:
        for name in self._columns:
            self[name]


def content_digest(read: Callable[[int, int], bytes], size: int) -> bytes:
    """The fingerprint an index keeps of its capture: sha1(size as u64, first and last 4 KiB)."""
    head = read(0, min(size, DIGEST_SPAN))
    tail = read(max(0, size - DIGEST_SPAN), min(size, DIGEST_SPAN))
    return hashlib.sha1(struct.pack("<Q", size) + head + tail).digest()


def capture_digest(capture: str | os.PathLike, size: int) -> bytes:
    """The content fingerprint of the capture at ``capture`` (in any tier: its decompressed bytes)."""
    source = open_source(capture)
    try:
        return content_digest(source.read, size)
    finally:
        source.close()


def capture_fingerprint(capture: str | os.PathLike) -> tuple[int, bytes]:
    """(size, content digest) of the capture at ``capture``, as its index keeps them.

    An archived capture's come from its record (``engine.formats.archived``): no byte of the
    archive is read.
    """
    path = os.fspath(capture)
    if path.endswith(ARCHIVED_SUFFIX):
        record = ArchiveRecord.load(path)
        return record.capture_size, bytes.fromhex(record.capture_digest)
    source = open_source(path)
    try:
        size = source.size()
        return size, content_digest(source.read, size)
    finally:
        source.close()


class FlowIndex:
    """An open index: header and column directory checked; columns are views of a read-only mapping.

    Opening touches the header and directory only; a lookup touches the few pages its binary
    searches visit, so asking many files' indexes costs little more than opening them.
    """

    def __init__(self, path: str | os.PathLike, data: bytes | None = None):
        """Open the index file at ``path``, or (``data`` given) the index held in ``data``."""
        self.path = os.fspath(path)
        if data is not None:
            self._map: mmap.mmap | bytes = data
            size = len(data)
            if size < HEADER_SIZE:
                raise IndexUnusable(f"{self.path}: not an index")
        else:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                if size < HEADER_SIZE:
                    raise IndexUnusable(f"{self.path}: not an index")
                self._map = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
        self.header = header = decode_header(self._map[:HEADER_SIZE], self.path)
        self.signature: tuple | None = None  # the files' (open_index), while this index is kept open
        self._reported = False
        directory_end = HEADER_SIZE + COLUMN.size * header.columns
        if (
            directory_end > size
            or header_checksum(self._map[:HEADER_SIZE], memoryview(self._map)[HEADER_SIZE:directory_end])
            != header.checksum
        ):
            self.damaged("its header or column directory does not match its checksum")
        self.flags, self.capture_size, self.digest = header.flags, header.capture_size, header.digest
        self.records, self.first_ns, self.last_ns = header.records, header.first_ns, header.last_ns
        self.n_flows, self.n_v4 = header.flows, header.v4_flows
        if self.n_v4 > self.n_flows or header.time_unit not in (1, 1000):
            raise IndexUnusable(f"{self.path}: a header that disagrees with itself")
        self.columns = self._read_columns(size)
        self._selections: dict[tuple, np.ndarray] = {}
        self._mapped: bool | None = None  # see _v6_mapped
        self._views: dict[str, IntColumn] = {}
        c = self.columns
        self.linktypes = c["linktype"].tolist()
        self.meta_offsets = c["metablk"].tolist()
        if any(offset >= self.capture_size for offset in self.meta_offsets):
            raise IndexUnusable(f"{self.path}: a block offset points past the capture")
        # Where the capture's damage begins (records end before it); None for an undamaged capture.
        self.damaged_at: int | None = header.damaged_at if header.flags & FLAG_DAMAGED else None
        if self.damaged_at is not None and self.damaged_at > self.capture_size:
            raise IndexUnusable(f"{self.path}: the damage it records lies past the capture")

    def damaged(self, problem: str) -> NoReturn:
        """Raise IndexDamaged for ``problem``, reported once and the index no longer kept open."""
        if not self._reported:
            self._reported = True
            _forget_damaged(self.path, self.signature)
            _report_damage(self.path, problem)
        raise IndexDamaged(f"{self.path}: {problem}")

    def check(self) -> None:
        """Check every column against its checksum now (IndexDamaged), not when first read."""
        self.columns.check_all()

    def _read_columns(self, size: int) -> _CheckedColumns:
        n, n4 = self.n_flows, self.n_v4
        at = HEADER_SIZE + COLUMN.size * self.header.columns
        if at > size:
            raise IndexUnusable(f"{self.path}: index is cut short")
        directory = [
            decode_column(self._map, HEADER_SIZE + COLUMN.size * i, self.path)
            for i in range(self.header.columns)
        ]
        crcs = {column.name: column.crc for column in directory}
        at += -at % 8
        columns = {}
        for column in directory:
            length = column.dtype.itemsize * column.entries
            if at + length > size:
                raise IndexUnusable(f"{self.path}: index is cut short")
            columns[column.name] = np.frombuffer(
                self._map, dtype=column.dtype, count=column.entries, offset=at
            )
            at += length + (-length % 8)
        if at != size:
            raise IndexUnusable(f"{self.path}: index size does not match its directory")
        expected: dict[str, int | None] = {
            "a4": n4,
            "b4": n4,
            "byaddr4": 2 * n4,
            "byaddr6": 2 * (n - n4),
            "byport": 2 * n,
        }
        expected |= {name: n - n4 for name in ("a6hi", "a6lo", "b6hi", "b6lo")}
        expected |= {
            name: n
            for name in ("aport", "bport", "proto", "flags", "first", "last", "packets", "bytes", "cid")
        }
        expected |= {
            "offsetat": -(-n // OFFSET_GROUP) + 1,
            "linktype": None,
            "metablk": None,
            "offsets": None,
        }
        for name, count in expected.items():
            if name not in columns or (count is not None and len(columns[name]) != count):
                raise IndexUnusable(f"{self.path}: column {name} is missing or of another length")
        return _CheckedColumns(self, columns, crcs)

    @property
    def pcapng(self) -> bool:
        return bool(self.flags & FLAG_PCAPNG)

    @property
    def usable_for_queries(self) -> bool:
        """False for pcapng files with Simple Packet Blocks, whose times only a full read can tell."""
        return not self.flags & FLAG_SIMPLE_BLOCKS

    @property
    def span(self) -> tuple[int, int] | None:
        """(first_ns, last_ns) of the capture's records; None when it has none."""
        return (self.first_ns, self.last_ns) if self.records else None

    def describes(self, capture: str | os.PathLike) -> bool:
        """True when this index was built from ``capture`` as it is now (size and content digest)."""
        return capture_fingerprint(capture) == (self.capture_size, self.digest)

    # ------------------------------------------------------------ rows

    def _checked(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) <= FEW_ROWS:  # numpy's max and min cost more than a few ints in Python
            few = ids.tolist()
            if few and (max(few) >= self.n_flows or min(few) < 0):
                raise IndexUnusable(f"{self.path}: a lookup names flow {max(few)} of {self.n_flows}")
        elif ids.max() >= self.n_flows or ids.min() < 0:
            raise IndexUnusable(f"{self.path}: a lookup names flow {ids.max()} of {self.n_flows}")
        return ids

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

    # ------------------------------------------------------------ lookups

    def _view(self, name: str) -> IntColumn:
        """Column ``name`` as a sequence of Python ints (a memoryview: a binary search reads it cheaply)."""
        view = self._views.get(name)
        if view is None:
            column = self.columns[name]
            code = _VIEW_CODES.get(column.dtype.str) if sys.byteorder == "little" else None
            as_bytes = memoryview(column.data).cast("B")
            view = _IntColumn(column) if code is None else as_bytes.cast(code)  # type: ignore[call-overload]
            self._views[name] = view
        return view

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
        """Ids of the flows that may hold packets of ``selection`` (an ``engine.flow.Selection``).

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
        rules (``engine.select``), applied to a few rows instead of the whole table.

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

    # ------------------------------------------------------------ packet offsets

    def packet_offsets(self, flow_ids: np.ndarray) -> np.ndarray:
        """Record offsets of the packets of ``flow_ids``, ascending; IndexUnusable unless inside the capture."""
        ids = self._checked(flow_ids)
        # Decoding the whole column pays when the flows asked hold a good share of the records,
        # not merely of the flows: a small flow beside an elephant is decoded alone.
        if len(ids) * 4 > self.n_flows and int(self.columns["packets"][ids].sum()) * 4 > self.records:
            offsets = self._offsets_of_many(ids)
        elif len(ids) > GROUPS_FROM:
            offsets = self._offsets_of_groups(ids)
        elif len(ids) == 1:
            offsets = self._flow_offsets(int(ids[0]))
        else:
            parts = [self._flow_offsets(int(i)) for i in ids.tolist()]
            offsets = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if len(ids) > 1:
            offsets = np.sort(offsets)
        # Checked on the offsets asked for, not on open: reading them must stay inside the capture.
        if len(offsets) and (offsets[-1] >= self.capture_size or np.any(offsets[1:] <= offsets[:-1])):
            raise IndexUnusable(f"{self.path}: packet offsets out of order or past the capture")
        return offsets

    def _flow_offsets(self, flow: int) -> np.ndarray:
        c = self.columns
        group = flow // OFFSET_GROUP
        start, stop = int(c["offsetat"][group]), int(c["offsetat"][group + 1])
        if not start <= stop <= len(c["offsets"]):
            raise IndexUnusable(f"{self.path}: offsets of flow {flow} past their column")
        if stop - start <= FEW_OFFSET_BYTES:
            return np.array(
                self._few_offsets(flow, group, c["offsets"][start:stop].tobytes()), dtype=np.int64
            )
        region = c["offsets"][start:stop]
        skip = int(c["packets"][group * OFFSET_GROUP : flow].sum(dtype=np.int64))
        count = int(c["packets"][flow])
        ends = np.flatnonzero(region < 0x80)
        if skip + count > len(ends) or count == 0:
            raise IndexUnusable(f"{self.path}: offsets of flow {flow} cut short")
        begin = int(ends[skip - 1]) + 1 if skip else 0
        return self._decoded(region[begin : int(ends[skip + count - 1]) + 1])

    def _few_offsets(self, flow: int, group: int, region: bytes) -> list[int]:
        """``_flow_offsets`` from a group's few bytes of offsets, decoded in plain Python (same checks).

        The varints of the group's earlier flows are skipped by their last bytes (below 0x80),
        found by ``bytes.find`` over a translation of the region; only the flow's own are decoded.
        """
        packets = self._view("packets")
        skip = sum(packets[k] for k in range(group * OFFSET_GROUP, flow))
        count = packets[flow]
        if count == 0:
            raise IndexUnusable(f"{self.path}: offsets of flow {flow} cut short")
        ends, at = region.translate(_VARINT_LAST_BYTES), 0
        for _ in range(skip):
            at = ends.find(b"e", at) + 1
            if not at:
                raise IndexUnusable(f"{self.path}: offsets of flow {flow} cut short")
        offsets: list[int] = []
        total = value = shift = 0
        for byte in region[at:]:
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if shift > 63:
                    raise IndexUnusable(f"{self.path}: a varint longer than 9 bytes")
                if value >= 1 << 62:
                    raise IndexUnusable(f"{self.path}: an offset past any capture")
                total += value
                offsets.append(total)
                if len(offsets) == count:
                    return offsets
                value = shift = 0
        raise IndexUnusable(f"{self.path}: offsets of flow {flow} cut short")

    def _decoded(self, data: np.ndarray) -> np.ndarray:
        try:
            distances = decode_varints(data)
        except ValueError as exc:
            raise IndexUnusable(f"{self.path}: {exc}") from None
        if len(distances) and distances.max() >= 1 << 62:
            raise IndexUnusable(f"{self.path}: an offset past any capture")
        return np.cumsum(distances.astype(np.int64))

    def _offsets_of_groups(self, ids: np.ndarray) -> np.ndarray:
        """The offsets of several flows, decoding at once only the groups of OFFSET_GROUP flows that hold them."""
        c = self.columns
        groups = np.unique(ids // OFFSET_GROUP)
        at = c["offsetat"]
        if groups[-1] + 1 >= len(at):
            raise IndexUnusable(f"{self.path}: offsets of flow {int(ids.max())} past their column")
        first, stop = at[groups].astype(np.int64), at[groups + 1].astype(np.int64)
        sizes = stop - first
        if np.any(sizes < 0) or int(stop.max()) > len(c["offsets"]):
            raise IndexUnusable(f"{self.path}: offsets of a flow past their column")
        # the groups' bytes, one after another: each group's varints end where the next group's begin
        where = np.repeat(first - (np.cumsum(sizes) - sizes), sizes) + np.arange(int(sizes.sum()))
        try:
            distances = decode_varints(c["offsets"][where]).astype(np.int64)
        except ValueError as exc:
            raise IndexUnusable(f"{self.path}: {exc}") from None
        flows = (groups[:, None] * OFFSET_GROUP + np.arange(OFFSET_GROUP)).ravel()
        flows = flows[flows < self.n_flows]
        counts = c["packets"][flows].astype(np.int64)
        if int(counts.sum()) != len(distances) or np.any(counts == 0):
            raise IndexUnusable(f"{self.path}: offsets that disagree with the flow table")
        if len(distances) and distances.max() >= 1 << 62:
            raise IndexUnusable(f"{self.path}: an offset past any capture")
        starts = np.cumsum(counts) - counts
        total = np.cumsum(distances)
        offsets = total - np.repeat(total[starts] - distances[starts], counts)
        return offsets[np.repeat(np.isin(flows, ids), counts)]

    def _offsets_of_many(self, ids: np.ndarray) -> np.ndarray:
        """The offsets of many flows at once: the whole column decoded, the flows' runs taken."""
        c = self.columns
        try:
            distances = decode_varints(c["offsets"]).astype(np.int64)
        except ValueError as exc:
            raise IndexUnusable(f"{self.path}: {exc}") from None
        counts = c["packets"].astype(np.int64)
        if int(counts.sum()) != len(distances) or np.any(counts == 0):
            raise IndexUnusable(f"{self.path}: offsets that disagree with the flow table")
        starts = np.cumsum(counts) - counts
        total = np.cumsum(distances)
        offsets = total - np.repeat(total[starts] - distances[starts], counts)
        wanted = np.zeros(self.n_flows, dtype=bool)
        wanted[ids] = True
        return offsets[np.repeat(wanted, counts)]


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


class _IntColumn:
    """A column read as Python ints one at a time, where a memoryview cannot show it."""

    def __init__(self, column: np.ndarray) -> None:
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, at: int) -> int:
        return int(self.column[at])


def _side(rows: np.ndarray, side: str, address: bytes | None, port: int | None) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    if address is not None:
        hi, lo = address_halves(address)
        keep &= (rows[side + "_hi"] == np.uint64(hi)) & (rows[side + "_lo"] == np.uint64(lo))
    if port is not None:
        keep &= rows[side + "_port"] == port
    return keep


# ---------------------------------------------------------------- opening, with the one validity rule


def _current_index(capture: str, signature: tuple | None = None, whole: bool = False) -> FlowIndex | None:
    """The index of ``capture`` when it opens cleanly and was built from this very content.

    ``whole``: every column's checksum is checked now, not when the column is first read.
    """
    try:
        index = FlowIndex(capture_name(capture) + INDEX_SUFFIX)
        index.signature = signature
        if index.describes(capture):
            if whole:
                index.check()
            return index
    except (OSError, IndexUnusable, ValueError):
        pass
    return None


def _forget_damaged(path: str, signature: tuple | None) -> None:
    """The index at ``path`` is damaged: dropped from the open ones, remembered as damaged."""
    capture = path.removesuffix(INDEX_SUFFIX)
    with _OPEN_LOCK:
        kept = _OPEN.get(capture)
        if kept is not None and kept[1].path == path:
            del _OPEN[capture]
        if signature is not None:
            if len(_DAMAGED) >= DAMAGED_KEPT:
                _DAMAGED.clear()
            _DAMAGED[capture] = signature


def open_index(capture: str | os.PathLike, *, capture_stat: os.stat_result | None = None) -> FlowIndex | None:
    """The current index of ``capture``, or None when it is missing, damaged, outdated or of another file.

    Indexes found current are kept open (a few thousand, least recently used dropped first) for as
    long as neither file changes on disk (same inode, size, mtime), so a query over many files
    does not open and check each index again. ``capture_stat`` is the capture's ``os.stat``, when
    the caller has just taken it.
    """
    capture = os.fspath(capture)
    try:
        if capture_stat is None:
            capture_stat = os.stat(capture)
        index_stat = os.stat(capture_name(capture) + INDEX_SUFFIX)
    except OSError:
        return None
    signature = tuple((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for st in (capture_stat, index_stat))
    with _OPEN_LOCK:
        cached = _OPEN.get(capture)
        if cached is not None and cached[0] == signature:
            _OPEN.move_to_end(capture)
            return cached[1]
        if _DAMAGED.get(capture) == signature:
            return None  # found damaged before, unchanged since
    index = _current_index(capture, signature)
    if index is None:
        return None
    with _OPEN_LOCK:
        _OPEN[capture] = (signature, index)
        while len(_OPEN) > OPEN_INDEXES:
            _OPEN.popitem(last=False)
    return index


def forget_open_indexes() -> None:
    """Drop the indexes kept open (benchmarks measuring a cold open, tests)."""
    with _OPEN_LOCK:
        _OPEN.clear()
        _DAMAGED.clear()


def index_is_current(capture: str | os.PathLike) -> bool:
    """True when ``capture`` has an undamaged index of this version built from it as it is now.

    Every checksum is checked (``reindex`` asks this to find what to rebuild).
    """
    return _current_index(os.fspath(capture), whole=True) is not None


def capture_span(capture: str | os.PathLike) -> tuple[int, int] | None:
    """(first_ns, last_ns) of ``capture`` from its current index; None without one or without packets."""
    index = open_index(capture)
    return index.span if index is not None else None
