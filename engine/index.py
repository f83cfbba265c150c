"""A capture file's flow index: built in one pass, read by the query with binary searches.

The index of ``pcap.1700000000`` is ``pcap.1700000000.idx`` beside it. It names its capture by
content (size and a digest of the first and last 4 KiB), not by path or time, so it can be built
in one directory and the capture moved next to it afterwards.

Format, version 1 (all integers little-endian; every section starts on an 8-byte boundary)::

    header, 128 bytes
      magic          8s   b"PARINDEX"
      version        u32  1
      flags          u32  1 = offsets are u64 (capture >= 4 GiB), 2 = pcapng capture,
                          4 = pcapng Simple Packet Blocks present (queries scan such a file instead)
      capture_size   u64  bytes of the capture when indexed
      digest         20s  sha1(capture size as u64, first 4096 bytes, last 4096 bytes)
      records        u64  complete records in the capture (with a flow or not)
      first_ns       i64  smallest record timestamp (ns since the epoch; 0 when no records)
      last_ns        i64  largest record timestamp
      flows          u32  rows of the flow table
      linktypes      u32  entries of the link-type list
      meta_blocks    u32  entries of the pcapng block list
      reserved       u32
      entries        u64  entries of the packet-offset list
      reserved       to 128 bytes
    link types       u32[linktypes]       link types of the records
    meta blocks      u64[meta_blocks]     offsets of pcapng section header / interface blocks
    flow table       96-byte rows, one per direction-folded flow (flowtable.FLOW_DTYPE):
                       a_hi u64, a_lo u64, b_hi u64, b_lo u64   the two endpoint addresses
                       first_ns i64, last_ns i64                 its first and last packet time
                       bytes u64                                 original lengths, summed
                       start u64, packets u32                    its run in the packet offsets
                       a_port u16, b_port u16, proto u8
                       community_id 20s                          Community ID v1 (seed 0) sha1;
                                                                 text: "1:" + base64
                       reserved 3 bytes
    address lookup   u64[2*flows] hi, u64[2*flows] lo, u32[2*flows] flow: both ends of every
                     flow, sorted by address (hi, lo); three sections, one per column
    port lookup      u16[2*flows] port, u32[2*flows] flow: both ends, sorted by port; two sections
    packet offsets   u32 or u64[entries]  record offsets, grouped by flow, ascending in a group;
                                          flow i owns entries [start_i, start_i + packets_i)

A flow is folded so that (a, a_port) <= (b, b_port), addresses compared as 16 bytes (IPv4 as
``::ffff:a.b.c.d``, stored as two big-endian u64 halves). Ports are 0 for protocols without
ports. Non-first fragments are in the flow of their datagram's first fragment (see
``engine.dissect``). Packet timestamps are not stored: the query reads each record's header to
clip time anyway.

A reader meeting an index of another version, a damaged one (sizes that disagree with the
header), or one of other content than its capture gets None from ``open_index`` and scans the
capture instead; ``reindex`` and the filer rebuild it. Sizes: 4 bytes per packet of a flow plus
about 136 bytes per flow, about 1.2% of the capture on the benchmark's traffic mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import bulk
from .flowtable import community_id, flow_table, lookups
from .formats import Capture, CaptureError, IncompleteHeader, open_capture
from .indexfile import (
    FLAG_OFFSETS64,
    FLAG_PCAPNG,
    FLAG_SIMPLE_BLOCKS,
    HEADER,
    HEADER_SIZE,
    INDEX_VERSION,
    MAGIC,
    FlowIndex,
    IndexUnusable,
)

INDEX_SUFFIX = ".idx"
DIGEST_SPAN = 4096
OPEN_INDEXES = 4096
_OPEN: OrderedDict[str, tuple[tuple, FlowIndex]] = OrderedDict()
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class IndexStats:
    packets: int
    capture_bytes: int
    flows: int
    first_ns: int | None
    last_ns: int | None
    index_bytes: int


def index_path(capture: Path) -> Path:
    """Where the index of ``capture`` lives: beside it, ``<capture name>.idx``."""
    return Path(os.fspath(capture) + INDEX_SUFFIX)


def _digest(read, size: int) -> bytes:
    head = read(0, min(size, DIGEST_SPAN))
    tail = read(max(0, size - DIGEST_SPAN), min(size, DIGEST_SPAN))
    return hashlib.sha1(struct.pack("<Q", size) + head + tail).digest()


def capture_digest(capture: Path, size: int) -> bytes:
    """The content fingerprint an index keeps of its capture."""
    fd = os.open(capture, os.O_RDONLY)
    try:
        return _digest(lambda offset, n: os.pread(fd, n, offset), size)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- building


def build_index(capture: Path, out: Path | None = None) -> IndexStats:
    """Index ``capture`` (read once) into ``out`` (default: beside it), atomically.

    Raises CaptureError, writing nothing, when the capture cannot be parsed.
    """
    capture = Path(capture)
    out = Path(out) if out is not None else index_path(capture)
    with open_capture(capture) as cap:
        size = cap.size()
        if cap.kind == "pcap":
            layout, fields, digest = _index_pcap(cap, size)
        else:
            layout = bulk.walk_pcapng(cap)
            with _mapped(cap) as mm:
                fields, digest = _dissect(mm, layout), _digest(lambda o, n: mm[o : o + n], size)
    sections, header_values = _sections(layout, fields, size, digest, cap.kind == "pcapng")
    index_bytes = _write_atomically(out, header_values, sections)
    return IndexStats(
        packets=len(layout.offset),
        capture_bytes=size,
        flows=header_values["flows"],
        first_ns=header_values["first_ns"] if len(layout.offset) else None,
        last_ns=header_values["last_ns"] if len(layout.offset) else None,
        index_bytes=index_bytes,
    )


class _mapped:
    """The capture memory-mapped read-only (an empty mapping for an empty file)."""

    def __init__(self, cap: Capture):
        self.cap = cap

    def __enter__(self) -> mmap.mmap | bytes:
        size = self.cap.size()
        self.mm = mmap.mmap(self.cap._file.fileno(), size, access=mmap.ACCESS_READ) if size else b""
        if size:
            self.mm.madvise(mmap.MADV_SEQUENTIAL)
        return self.mm

    def __exit__(self, *exc) -> None:
        if isinstance(self.mm, mmap.mmap):
            # An exception's frames may still see the mapping; it is unmapped when they go.
            with contextlib.suppress(BufferError):
                self.mm.close()


def _index_pcap(cap: Capture, size: int):
    with _mapped(cap) as mm:
        layout = bulk.walk_pcap(cap, mm, size)
        fields = _dissect(mm, layout)
        digest = _digest(lambda o, n: mm[o : o + n], size)
    return layout, fields, digest


def _dissect(mm, layout: bulk.Layout) -> bulk.Fields:
    fields, slow_rows = bulk.flow_fields(mm, len(mm), layout)
    bulk.fill_slow_rows(mm, layout, fields, slow_rows)
    return fields


def _sections(layout: bulk.Layout, fields: bulk.Fields, size: int, digest: bytes, pcapng: bool):
    flows, offsets = flow_table(layout, fields)
    lookup_columns = lookups(flows)
    wide = size >= 1 << 32
    flags = (FLAG_OFFSETS64 if wide else 0) | (FLAG_PCAPNG if pcapng else 0)
    flags |= FLAG_SIMPLE_BLOCKS if layout.simple_blocks else 0
    linktypes = np.unique(layout.linktype).astype("<u4")
    values = {
        "flags": flags,
        "capture_size": size,
        "digest": digest,
        "records": len(layout.offset),
        "first_ns": int(layout.ts_ns.min()) if len(layout.ts_ns) else 0,
        "last_ns": int(layout.ts_ns.max()) if len(layout.ts_ns) else 0,
        "flows": len(flows),
        "linktypes": len(linktypes),
        "meta_blocks": len(layout.meta_offsets),
        "entries": len(offsets),
    }
    sections = [
        linktypes,
        np.array(layout.meta_offsets, dtype="<u8"),
        flows,
        *lookup_columns,
        offsets.astype("<u8" if wide else "<u4"),
    ]
    return sections, values


def _header(values: dict) -> bytes:
    head = HEADER.pack(
        MAGIC,
        INDEX_VERSION,
        values["flags"],
        values["capture_size"],
        values["digest"],
        values["records"],
        values["first_ns"],
        values["last_ns"],
        values["flows"],
        values["linktypes"],
        values["meta_blocks"],
        0,
        values["entries"],
    )
    return head + b"\0" * (HEADER_SIZE - len(head))


def _write_atomically(out: Path, values: dict, sections: list[np.ndarray]) -> int:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with open(tmp, "wb") as f:
            f.write(_header(values))
            written = HEADER_SIZE
            for section in sections:
                data = section.tobytes()
                f.write(data + b"\0" * (-len(data) % 8))
                written += len(data) + (-len(data) % 8)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


# ---------------------------------------------------------------- reading


def _checked_index(capture: str) -> FlowIndex | None:
    """The index of ``capture`` when it opens cleanly and was built from this very content."""
    try:
        index = FlowIndex(capture + INDEX_SUFFIX)
        size = os.stat(capture).st_size
        if size == index.capture_size and capture_digest(capture, size) == index.digest:
            return index
    except (OSError, IndexUnusable, ValueError):
        pass
    return None


def open_index(capture: Path) -> FlowIndex | None:
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
    index = _checked_index(capture)
    if index is None:
        return None
    with _OPEN_LOCK:
        _OPEN[capture] = (signature, index)
        while len(_OPEN) > OPEN_INDEXES:
            _OPEN.popitem(last=False)
    return index


def index_is_current(capture: Path) -> bool:
    """True when ``capture`` has an index of this version that was built from it as it is now."""
    return _checked_index(os.fspath(capture)) is not None


def capture_span(capture: Path) -> tuple[int, int] | None:
    """(first_ns, last_ns) of ``capture`` from its current index's header; None without one or without packets."""
    try:
        with open(index_path(capture), "rb") as f:
            head = f.read(HEADER_SIZE)
        size = os.stat(capture).st_size
    except OSError:
        return None
    if len(head) < HEADER_SIZE or head[:8] != MAGIC:
        return None
    fields = HEADER.unpack_from(head)
    if fields[1] != INDEX_VERSION or fields[3] != size or fields[5] == 0:
        return None
    return fields[6], fields[7]


__all__ = [
    "INDEX_VERSION",
    "CaptureError",
    "FlowIndex",
    "IncompleteHeader",
    "IndexUnusable",
    "IndexStats",
    "build_index",
    "capture_span",
    "community_id",
    "index_is_current",
    "index_path",
    "open_index",
]
