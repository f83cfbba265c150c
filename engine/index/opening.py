"""Opening a flow index: the header and column directory checked on open, the capture's fingerprint,
damaged indexes reported and remembered, current indexes kept open.

``FlowIndex`` is an open index; what it finds is in ``engine.index.lookup`` (flow rows and lookups)
and ``engine.index.offsets`` (packet offsets). The format and the rule for when an index answers for
its capture are in ``engine.index.format``.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import NoReturn

import numpy as np

from ..formats.archived import ArchiveRecord
from ..formats.source import ARCHIVED_SUFFIX, capture_name, open_source
from .columns import IntColumn, _CheckedColumns
from .format import (
    COLUMN,
    DIGEST_SPAN,
    FLAG_DAMAGED,
    FLAG_PCAPNG,
    FLAG_SIMPLE_BLOCKS,
    HEADER_SIZE,
    INDEX_SUFFIX,
    INDEX_VERSION,
    OFFSET_GROUP,
    IndexDamaged,
    IndexUnusable,
    decode_column,
    decode_header,
    header_checksum,
)
from .icmp import COLUMNS as ICMP_COLUMNS
from .icmp import expected_lengths as expected_icmp
from .lookup import FlowLookups
from .offsets import PacketOffsets

OPEN_INDEXES = 4096
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


class FlowIndex(FlowLookups, PacketOffsets):
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
        if self.header.version >= 4:  # the ICMP message flows (engine.index.icmp)
            icmp: dict[str, int | None] = {name: None for name in ICMP_COLUMNS}
            expected |= expected_icmp(columns) or icmp
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

    Every checksum is checked (``reindex`` asks this to find what to rebuild). An index of version
    3 answers queries but is not current: ``reindex`` rebuilds it with the ICMP columns.
    """
    index = _current_index(os.fspath(capture), whole=True)
    return index is not None and index.header.version == INDEX_VERSION


def capture_span(capture: str | os.PathLike) -> tuple[int, int] | None:
    """(first_ns, last_ns) of ``capture`` from its current index; None without one or without packets."""
    index = open_index(capture)
    return index.span if index is not None else None
