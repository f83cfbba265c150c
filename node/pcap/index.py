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

import base64
import contextlib
import hashlib
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import bulk
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

FLOW_DTYPE = np.dtype(
    [
        ("a_hi", "<u8"),
        ("a_lo", "<u8"),
        ("b_hi", "<u8"),
        ("b_lo", "<u8"),
        ("first_ns", "<i8"),
        ("last_ns", "<i8"),
        ("bytes", "<u8"),  # original lengths, summed
        ("start", "<u8"),  # first entry in the packet-offset list
        ("packets", "<u4"),
        ("a_port", "<u2"),
        ("b_port", "<u2"),
        ("proto", "u1"),
        ("community_id", "V20"),  # Community ID v1 (seed 0) sha1 digest; text form: community_id()
        ("reserved", "V3"),
    ]
)
ADDRESS_DTYPE = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("flow", "<u4")])
PORT_DTYPE = np.dtype([("port", "<u2"), ("flow", "<u4")])


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
    buf = np.frombuffer(mm, dtype=np.uint8) if len(mm) else np.zeros(1, np.uint8)
    fields, slow_rows = bulk.flow_fields(buf, layout)
    del buf
    bulk.fill_slow_rows(mm, layout, fields, slow_rows)
    return fields


def _fold(fields: bulk.Fields, rows: np.ndarray):
    """Direction-folded endpoint columns of ``rows``: (a_hi, a_lo, a_port, b_hi, b_lo, b_port, proto)."""
    s_hi, s_lo, sp = fields.src_hi[rows], fields.src_lo[rows], fields.sport[rows]
    d_hi, d_lo, dp = fields.dst_hi[rows], fields.dst_lo[rows], fields.dport[rows]
    swap = (s_hi > d_hi) | ((s_hi == d_hi) & ((s_lo > d_lo) | ((s_lo == d_lo) & (sp > dp))))
    return (
        np.where(swap, d_hi, s_hi),
        np.where(swap, d_lo, s_lo),
        np.where(swap, dp, sp),
        np.where(swap, s_hi, d_hi),
        np.where(swap, s_lo, d_lo),
        np.where(swap, sp, dp),
        fields.proto[rows],
    )


def _group(columns) -> tuple[np.ndarray, np.ndarray]:
    """(order, group starts): rows sorted so equal flows are adjacent and in file order within a flow."""
    a_hi, a_lo, a_port, b_hi, b_lo, b_port, proto = columns
    if not len(a_hi):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # A 64-bit mix of the key sorts fast; equal keys are checked below, so a collision costs time, not truth.
    h = a_hi * np.uint64(0x9E3779B97F4A7C15)
    for column, k in (
        (a_lo, 0xC2B2AE3D27D4EB4F),
        (b_hi, 0x165667B19E3779F9),
        (b_lo, 0xD6E8FEB86659FD93),
        (
            a_port.astype(np.uint64) << np.uint64(24) | b_port.astype(np.uint64) << np.uint64(8) | proto,
            0xFF51AFD7ED558CCD,
        ),
    ):
        h = (h ^ (h >> np.uint64(29))) * np.uint64(k) + column
    order = np.argsort(h, kind="stable")
    hs = h[order]
    starts = np.flatnonzero(np.concatenate(([True], hs[1:] != hs[:-1])))
    same_hash = np.repeat(starts, np.diff(np.append(starts, len(order))))
    for column in columns:
        if np.any(column[order] != column[order[same_hash]]):
            order = np.lexsort(tuple(reversed(columns)))  # a hash collision: sort by the key itself
            changed = np.zeros(len(order), dtype=bool)
            for c in columns:
                sc = c[order]
                changed[1:] |= sc[1:] != sc[:-1]
            changed[:1] = True
            starts = np.flatnonzero(changed)
            break
    return order, starts


def community_id(a: bytes, a_port: int, b: bytes, b_port: int, proto: int) -> str:
    """Community ID v1 (seed 0) of a flow, addresses given as 16 bytes (IPv4-mapped for IPv4)."""
    return "1:" + base64.b64encode(_community_digest(a, a_port, b, b_port, proto)).decode()


def _community_digest(a: bytes, a_port: int, b: bytes, b_port: int, proto: int) -> bytes:
    if a[:12] == bulk.d.V4_PREFIX and b[:12] == bulk.d.V4_PREFIX:
        a, b = a[12:], b[12:]
    if (b, b_port) < (a, a_port):
        a, a_port, b, b_port = b, b_port, a, a_port
    data = struct.pack("!H", 0) + a + b + struct.pack("!BB", proto, 0)
    if proto in bulk.d.PORT_PROTOCOLS:
        data += struct.pack("!HH", a_port, b_port)
    return hashlib.sha1(data).digest()


def _flow_table(layout: bulk.Layout, fields: bulk.Fields):
    rows = np.flatnonzero(fields.has_flow)
    columns = _fold(fields, rows)
    order, starts = _group(columns)
    packet_rows = rows[order]
    counts = np.diff(np.append(starts, len(order)))
    flows = np.zeros(len(starts), dtype=FLOW_DTYPE)
    for name, column in zip(
        ("a_hi", "a_lo", "a_port", "b_hi", "b_lo", "b_port", "proto"), columns, strict=True
    ):
        flows[name] = column[order[starts]]
    ts = layout.ts_ns[packet_rows]
    if len(starts):
        flows["first_ns"] = np.minimum.reduceat(ts, starts)
        flows["last_ns"] = np.maximum.reduceat(ts, starts)
        flows["bytes"] = np.add.reduceat(layout.orig_len[packet_rows], starts)
    flows["start"] = starts
    flows["packets"] = counts
    digests = [
        _community_digest(
            int(f["a_hi"]).to_bytes(8, "big") + int(f["a_lo"]).to_bytes(8, "big"),
            int(f["a_port"]),
            int(f["b_hi"]).to_bytes(8, "big") + int(f["b_lo"]).to_bytes(8, "big"),
            int(f["b_port"]),
            int(f["proto"]),
        )
        for f in flows
    ]
    if digests:
        flows["community_id"] = np.frombuffer(b"".join(digests), dtype="V20")
    return flows, layout.offset[packet_rows]


def _lookups(flows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(len(flows), dtype=np.uint32)
    addresses = np.zeros(2 * len(flows), dtype=ADDRESS_DTYPE)
    addresses["hi"] = np.concatenate([flows["a_hi"], flows["b_hi"]])
    addresses["lo"] = np.concatenate([flows["a_lo"], flows["b_lo"]])
    addresses["flow"] = np.concatenate([ids, ids])
    addresses = addresses[np.lexsort((addresses["lo"], addresses["hi"]))]
    ports = np.zeros(2 * len(flows), dtype=PORT_DTYPE)
    ports["port"] = np.concatenate([flows["a_port"], flows["b_port"]])
    ports["flow"] = np.concatenate([ids, ids])
    ports = ports[np.argsort(ports["port"], kind="stable")]
    return addresses, ports


def _sections(layout: bulk.Layout, fields: bulk.Fields, size: int, digest: bytes, pcapng: bool):
    flows, offsets = _flow_table(layout, fields)
    addresses, ports = _lookups(flows)
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
