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
    flow table       FLOW_DTYPE[flows]    one row per direction-folded flow (see FLOW_DTYPE)
    address lookup   ADDRESS_DTYPE[2*flows]  (address, flow) for both ends, sorted by address
    port lookup      PORT_DTYPE[2*flows]     (port, flow) for both ends, sorted by port
    packet offsets   u32 or u64[entries]  record offsets, grouped by flow, ascending in a group;
                                          flow i owns entries [start_i, start_i + packets_i)

A flow is folded so that (a, a_port) <= (b, b_port), addresses compared as 16 bytes (IPv4 as
``::ffff:a.b.c.d``, stored as two big-endian u64 halves). Ports are 0 for protocols without
ports. Non-first fragments are in the flow of their datagram's first fragment (see
``node.pcap.dissect``). Packet timestamps are not stored: the query reads each record's header to
clip time anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import bulk
from .flowtable import ADDRESS_DTYPE, FLOW_DTYPE, PORT_DTYPE, community_id, flow_table, lookups
from .formats import Capture, CaptureError, IncompleteHeader, open_capture

INDEX_VERSION = 1
INDEX_SUFFIX = ".idx"
MAGIC = b"PARINDEX"
HEADER = struct.Struct("<8sIIQ20sQqqIIIIQ")
HEADER_SIZE = 128
DIGEST_SPAN = 4096
FLAG_OFFSETS64 = 1
FLAG_PCAPNG = 2
FLAG_SIMPLE_BLOCKS = 4


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
    capture = Path(capture)
    return capture.with_name(capture.name + INDEX_SUFFIX)


def _digest(read, size: int) -> bytes:
    head = read(0, min(size, DIGEST_SPAN))
    tail = read(max(0, size - DIGEST_SPAN), min(size, DIGEST_SPAN))
    return hashlib.sha1(struct.pack("<Q", size) + head + tail).digest()


def capture_digest(capture: Path, size: int) -> bytes:
    """The content fingerprint an index keeps of its capture."""
    with open(capture, "rb", buffering=0) as f:
        return _digest(lambda offset, n: os.pread(f.fileno(), n, offset), size)


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
    addresses, ports = lookups(flows)
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
        addresses,
        ports,
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


class IndexUnusable(ValueError):
    """An index that cannot be used (missing, damaged, another version, another capture)."""


def _aligned(n: int) -> int:
    return n + (-n % 8)


class FlowIndex:
    """An open, checked index: header facts, the flow table and lookups in memory, offsets read on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            head = f.read(HEADER_SIZE)
            if len(head) < HEADER_SIZE or head[:8] != MAGIC:
                raise IndexUnusable(f"{self.path}: not an index")
            fields = HEADER.unpack_from(head)
            if fields[1] != INDEX_VERSION:
                raise IndexUnusable(f"{self.path}: index version {fields[1]}, expected {INDEX_VERSION}")
            (
                _,
                _,
                self.flags,
                self.capture_size,
                self.digest,
                self.records,
                self.first_ns,
                self.last_ns,
                n_flows,
                n_linktypes,
                n_meta,
                _,
                self.entries,
            ) = fields
            self.offset_dtype = np.dtype("<u8" if self.flags & FLAG_OFFSETS64 else "<u4")
            layout = [
                ("linktypes", np.dtype("<u4"), n_linktypes),
                ("meta", np.dtype("<u8"), n_meta),
                ("flows", FLOW_DTYPE, n_flows),
                ("addresses", ADDRESS_DTYPE, 2 * n_flows),
                ("ports", PORT_DTYPE, 2 * n_flows),
            ]
            at = HEADER_SIZE
            arrays = {}
            for name, dtype, count in layout:
                data = f.read(_aligned(dtype.itemsize * count))
                if len(data) < dtype.itemsize * count:
                    raise IndexUnusable(f"{self.path}: index is cut short")
                arrays[name] = np.frombuffer(data, dtype=dtype, count=count)
                at += len(data)
            self.offsets_at = at
            expected = at + _aligned(self.offset_dtype.itemsize * self.entries)
            if os.fstat(f.fileno()).st_size != expected:
                raise IndexUnusable(f"{self.path}: index size does not match its header")
        self.linktypes = [int(x) for x in arrays["linktypes"]]
        self.meta_offsets = [int(x) for x in arrays["meta"]]
        self.flows, self.addresses, self.ports = arrays["flows"], arrays["addresses"], arrays["ports"]
        ends = self.flows["start"].astype(np.int64) + self.flows["packets"]
        if len(ends) and int(ends.max()) > self.entries:
            raise IndexUnusable(f"{self.path}: flow table points past the offsets")

    @property
    def pcapng(self) -> bool:
        return bool(self.flags & FLAG_PCAPNG)

    @property
    def usable_for_queries(self) -> bool:
        """False for pcapng files with Simple Packet Blocks, whose times only a full read can tell."""
        return not self.flags & FLAG_SIMPLE_BLOCKS

    def matches_capture(self, capture: Path) -> bool:
        """True when ``capture`` is the file this index was built from (size and content digest)."""
        try:
            size = os.stat(capture).st_size
            return size == self.capture_size and capture_digest(capture, size) == self.digest
        except OSError:
            return False

    # ------------------------------------------------------------ lookups

    def _address_flows(self, address: bytes) -> np.ndarray:
        hi, lo = bulk.address_halves(address)
        table = self.addresses
        left = np.searchsorted(table["hi"], np.uint64(hi), "left")
        right = np.searchsorted(table["hi"], np.uint64(hi), "right")
        run = table["lo"][left:right]
        first = np.searchsorted(run, np.uint64(lo), "left")
        last = np.searchsorted(run, np.uint64(lo), "right")
        return table["flow"][left + first : left + last]

    def _port_flows(self, port: int) -> np.ndarray:
        table = self.ports
        left = np.searchsorted(table["port"], port, "left")
        right = np.searchsorted(table["port"], port, "right")
        return table["flow"][left:right]

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
        """Ids of the flows between endpoint (a, a_port) and (b, b_port), either way; None = any value."""
        candidates = None
        for value, lookup in ((a, self._address_flows), (b, self._address_flows)):
            if value is not None:
                found = np.unique(lookup(value))
                candidates = (
                    found if candidates is None else np.intersect1d(candidates, found, assume_unique=True)
                )
        if candidates is None:
            for port in (a_port, b_port):
                if port is not None:
                    found = np.unique(self._port_flows(port))
                    candidates = found if candidates is None else np.intersect1d(candidates, found, True)
        if candidates is None:
            candidates = np.arange(len(self.flows), dtype=np.uint32)
        rows = self.flows[candidates]
        keep = _side(rows, "a", a, a_port) & _side(rows, "b", b, b_port)
        keep |= _side(rows, "b", a, a_port) & _side(rows, "a", b, b_port)
        if protocols is not None:
            keep &= np.isin(rows["proto"], protocols)
        if start_ns is not None:
            keep &= rows["last_ns"] >= start_ns
        if end_ns is not None:
            keep &= rows["first_ns"] <= end_ns
        return candidates[keep]

    def packet_offsets(self, flow_ids: np.ndarray) -> np.ndarray:
        """Record offsets of the packets of ``flow_ids``, ascending."""
        parts = []
        with open(self.path, "rb", buffering=0) as f:
            for flow in np.asarray(flow_ids).tolist():
                row = self.flows[flow]
                count, size = int(row["packets"]), self.offset_dtype.itemsize
                data = os.pread(f.fileno(), count * size, self.offsets_at + int(row["start"]) * size)
                if len(data) < count * size:
                    raise IndexUnusable(f"{self.path}: index is cut short")
                parts.append(np.frombuffer(data, dtype=self.offset_dtype).astype(np.int64))
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0]


def _side(rows: np.ndarray, side: str, address: bytes | None, port: int | None) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    if address is not None:
        hi, lo = bulk.address_halves(address)
        keep &= (rows[side + "_hi"] == np.uint64(hi)) & (rows[side + "_lo"] == np.uint64(lo))
    if port is not None:
        keep &= rows[side + "_port"] == port
    return keep


def open_index(capture: Path) -> FlowIndex | None:
    """The current index of ``capture``, or None when it is missing, damaged, outdated or of another file."""
    try:
        index = FlowIndex(index_path(capture))
    except (OSError, IndexUnusable, ValueError):
        return None
    return index if index.matches_capture(capture) else None


def index_is_current(capture: Path) -> bool:
    """True when ``capture`` has an index of this version that was built from it as it is now."""
    return open_index(capture) is not None


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
    "IndexStats",
    "build_index",
    "capture_span",
    "community_id",
    "index_is_current",
    "index_path",
    "open_index",
]
