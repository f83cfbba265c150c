"""Reading a flow index: the header checked on open, the tables looked up in a read-only mapping.

The format and the rule for when an index answers for its capture are in ``engine.index.format``.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ..flowfields import address_halves
from .flows import FLOW_DTYPE, LOOKUP_COLUMNS
from .format import (
    DIGEST_SPAN,
    FLAG_OFFSETS64,
    FLAG_PCAPNG,
    FLAG_SIMPLE_BLOCKS,
    HEADER_SIZE,
    INDEX_SUFFIX,
    IndexUnusable,
    decode_header,
)

SMALL = 32  # candidate flows checked in Python rather than numpy
OPEN_INDEXES = 4096
_OPEN: OrderedDict[str, tuple[tuple, FlowIndex]] = OrderedDict()
_OPEN_LOCK = threading.Lock()


def _aligned(n: int) -> int:
    return n + (-n % 8)


def content_digest(read: Callable[[int, int], bytes], size: int) -> bytes:
    """The fingerprint an index keeps of its capture: sha1(size as u64, first and last 4 KiB)."""
    head = read(0, min(size, DIGEST_SPAN))
    tail = read(max(0, size - DIGEST_SPAN), min(size, DIGEST_SPAN))
    return hashlib.sha1(struct.pack("<Q", size) + head + tail).digest()


def capture_digest(capture: str | os.PathLike, size: int) -> bytes:
    """The content fingerprint of the capture file at ``capture``."""
    fd = os.open(capture, os.O_RDONLY)
    try:
        return content_digest(lambda offset, n: os.pread(fd, n, offset), size)
    finally:
        os.close(fd)


class FlowIndex:
    """An open index: header facts read and checked; tables are views of a read-only mapping.

    Opening touches the header only; a lookup touches the few pages its binary searches visit,
    so asking many files' indexes costs little more than opening them.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise IndexUnusable(f"{self.path}: not an index")
            self._map = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self.header = header = decode_header(self._map[:HEADER_SIZE], self.path)
        self.flags, self.capture_size, self.digest = header.flags, header.capture_size, header.digest
        self.records, self.first_ns, self.last_ns = header.records, header.first_ns, header.last_ns
        self.entries = header.entries
        self.offset_dtype = np.dtype("<u8" if self.flags & FLAG_OFFSETS64 else "<u4")
        at = HEADER_SIZE
        arrays = []
        for dtype, count in (
            (np.dtype("<u4"), header.linktypes),
            (np.dtype("<u8"), header.meta_blocks),
            (FLOW_DTYPE, header.flows),
            *((np.dtype(dtype), 2 * header.flows) for _, dtype in LOOKUP_COLUMNS),
        ):
            if at + dtype.itemsize * count > size:
                raise IndexUnusable(f"{self.path}: index is cut short")
            arrays.append(np.frombuffer(self._map, dtype=dtype, count=count, offset=at))
            at += _aligned(dtype.itemsize * count)
        self.offsets_at = at
        if at + _aligned(self.offset_dtype.itemsize * self.entries) != size:
            raise IndexUnusable(f"{self.path}: index size does not match its header")
        (
            linktypes,
            meta,
            self.flows,
            self.address_hi,
            self.address_lo,
            self.address_flow,
            self.port,
            self.port_flow,
        ) = arrays
        self.linktypes = linktypes.tolist()
        self.meta_offsets = meta.tolist()
        if any(offset >= self.capture_size for offset in self.meta_offsets):
            raise IndexUnusable(f"{self.path}: a block offset points past the capture")

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
        size = os.stat(capture).st_size
        return size == self.capture_size and capture_digest(capture, size) == self.digest

    # ------------------------------------------------------------ lookups

    def _address_flows(self, address: bytes) -> np.ndarray:
        hi, lo = (np.uint64(x) for x in address_halves(address))
        his = self.address_hi
        left, right = his.searchsorted(hi, "left"), his.searchsorted(hi, "right")
        run = self.address_lo[left:right]
        first, last = run.searchsorted(lo, "left"), run.searchsorted(lo, "right")
        return self.address_flow[left + first : left + last]

    def _port_flows(self, port: int) -> np.ndarray:
        left, right = self.port.searchsorted(port, "left"), self.port.searchsorted(port, "right")
        return self.port_flow[left:right]

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

        The most selective given field is looked up by binary search; the other fields are then
        checked on those candidate rows only.
        """
        if a is not None or b is not None:
            candidates = self._address_flows(a if a is not None else b)
        elif a_port is not None or b_port is not None:
            candidates = self._port_flows(a_port if a_port is not None else b_port)
        else:
            candidates = np.arange(len(self.flows), dtype=np.uint32)
        if len(candidates) > 1:
            candidates = np.unique(candidates)  # a flow between a host and itself is listed twice
        if not len(candidates):
            return candidates
        if candidates.max() >= len(self.flows):
            raise IndexUnusable(f"{self.path}: a lookup names flow {candidates.max()} of {len(self.flows)}")
        rows = self.flows[candidates]
        if len(rows) <= SMALL:
            wanted = _Wanted(a, a_port, b, b_port, protocols, start_ns, end_ns)
            keep = [wanted.matches(row) for row in rows.tolist()]
            return candidates[np.array(keep, dtype=bool)]
        keep = _side(rows, "a", a, a_port) & _side(rows, "b", b, b_port)
        keep |= _side(rows, "b", a, a_port) & _side(rows, "a", b, b_port)
        if protocols is not None:
            proto = rows["proto"]
            keep &= np.logical_or.reduce([proto == p for p in protocols])
        if start_ns is not None:
            keep &= rows["last_ns"] >= start_ns
        if end_ns is not None:
            keep &= rows["first_ns"] <= end_ns
        return candidates[keep]

    def packet_offsets(self, flow_ids: np.ndarray) -> np.ndarray:
        """Record offsets of the packets of ``flow_ids``, ascending; IndexUnusable unless inside the capture."""
        offsets = self._offsets_of(flow_ids)
        # Checked on the few offsets asked for, not on open: reading them must stay inside the capture.
        if len(offsets) and (offsets[-1] >= self.capture_size or np.any(offsets[1:] <= offsets[:-1])):
            raise IndexUnusable(f"{self.path}: packet offsets out of order or past the capture")
        return offsets

    def _offsets_of(self, flow_ids: np.ndarray) -> np.ndarray:
        parts = []
        for flow in np.asarray(flow_ids).tolist():
            row = self.flows[flow]
            start, count = int(row["start"]), int(row["packets"])
            if start + count > self.entries:
                raise IndexUnusable(f"{self.path}: flow {flow} points past the offsets")
            at = self.offsets_at + start * self.offset_dtype.itemsize
            parts.append(np.frombuffer(self._map, dtype=self.offset_dtype, count=count, offset=at))
        if len(parts) == 1:
            return parts[0]  # a view of the mapping: nothing copied
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.concatenate(parts).astype(np.int64))


class _Wanted:
    """The fields a lookup asks for, checked on flow rows as tuples (cheaper than numpy for a few rows)."""

    def __init__(self, a, a_port, b, b_port, protocols, start_ns, end_ns):
        self.a = address_halves(a) if a is not None else None
        self.b = address_halves(b) if b is not None else None
        self.a_port, self.b_port = a_port, b_port
        self.protocols, self.start_ns, self.end_ns = protocols, start_ns, end_ns

    @staticmethod
    def _end(address, port, row_address, row_port) -> bool:
        return (address is None or address == row_address) and (port is None or port == row_port)

    def matches(self, row: tuple) -> bool:
        a_hi, a_lo, b_hi, b_lo, first_ns, last_ns, _, _, _, a_port, b_port, proto = row[:12]
        if self.protocols is not None and proto not in self.protocols:
            return False
        if (self.start_ns is not None and last_ns < self.start_ns) or (
            self.end_ns is not None and first_ns > self.end_ns
        ):
            return False
        ra, rb = (a_hi, a_lo), (b_hi, b_lo)
        end = self._end
        return (end(self.a, self.a_port, ra, a_port) and end(self.b, self.b_port, rb, b_port)) or (
            end(self.a, self.a_port, rb, b_port) and end(self.b, self.b_port, ra, a_port)
        )


def _side(rows: np.ndarray, side: str, address: bytes | None, port: int | None) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    if address is not None:
        hi, lo = address_halves(address)
        keep &= (rows[side + "_hi"] == np.uint64(hi)) & (rows[side + "_lo"] == np.uint64(lo))
    if port is not None:
        keep &= rows[side + "_port"] == port
    return keep


# ---------------------------------------------------------------- opening, with the one validity rule


def _current_index(capture: str) -> FlowIndex | None:
    """The index of ``capture`` when it opens cleanly and was built from this very content."""
    try:
        index = FlowIndex(capture + INDEX_SUFFIX)
        if index.describes(capture):
            return index
    except (OSError, IndexUnusable, ValueError):
        pass
    return None


def open_index(capture: str | os.PathLike) -> FlowIndex | None:
    """The current index of ``capture``, or None when it is missing, damaged, outdated or of another file.

    Indexes found current are kept open (a few thousand, least recently used dropped first) for as
    long as neither file changes on disk (same inode, size, mtime), so a query over many files
    does not open and check each index again.
    """
    capture = os.fspath(capture)
    try:
        capture_stat, index_stat = os.stat(capture), os.stat(capture + INDEX_SUFFIX)
    except OSError:
        return None
    signature = tuple((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for st in (capture_stat, index_stat))
    with _OPEN_LOCK:
        cached = _OPEN.get(capture)
        if cached is not None and cached[0] == signature:
            _OPEN.move_to_end(capture)
            return cached[1]
    index = _current_index(capture)
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


def index_is_current(capture: str | os.PathLike) -> bool:
    """True when ``capture`` has an index of this version that was built from it as it is now."""
    return _current_index(os.fspath(capture)) is not None


def capture_span(capture: str | os.PathLike) -> tuple[int, int] | None:
    """(first_ns, last_ns) of ``capture`` from its current index; None without one or without packets."""
    index = open_index(capture)
    return index.span if index is not None else None
