"""Whole-file record walk and vectorised dissection, for building an index in one pass.

The walk over the record headers is the only per-packet Python; the flow fields are then gathered
for all records at once with numpy fancy indexing into the memory-mapped file. Packets the
vectorised path does not handle (IPv6 extension headers, fragments, deep VLAN stacks) go through
``node.pcap.dissect`` one by one; they are rare on real links.
"""

from __future__ import annotations

import mmap
import struct
import sys
from array import array
from dataclasses import dataclass

import numpy as np

from . import dissect as d
from .formats import MAX_CAPLEN, PCAP_HEADER_SIZE, PCAPNG_SPB, RECORD_HEADER_SIZE, Capture, CaptureError

NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"
FAST_VLAN_TAGS = 3  # deeper VLAN stacks take the per-packet path
V4_MAPPED = np.uint64(0xFFFF << 32)
SLOW_IPV6_HEADERS = (*d.IPV6_EXTENSIONS, d.IPV6_FRAGMENT, d.IPV6_AH)


@dataclass
class Layout:
    """Where each record of a capture is: record start, frame bytes, lengths, time, link type."""

    offset: np.ndarray  # int64, start of the record header / block
    data: np.ndarray  # int64, start of the frame bytes
    caplen: np.ndarray  # int64
    orig_len: np.ndarray  # int64
    ts_ns: np.ndarray  # int64
    linktype: np.ndarray  # int64
    meta_offsets: list[int]  # pcapng section header / interface blocks
    simple_blocks: bool  # pcapng Simple Packet Blocks (no timestamp of their own) seen


@dataclass
class Fields:
    """Flow fields of every record: ``has_flow`` says which ones carry one."""

    has_flow: np.ndarray  # bool
    src_hi: np.ndarray  # uint64 halves of the 16-byte address
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray  # uint8
    sport: np.ndarray  # uint16
    dport: np.ndarray  # uint16


# ---------------------------------------------------------------- walking


def walk_pcap(capture: Capture, mm: mmap.mmap, size: int) -> Layout:
    """Find every complete record of a classic pcap file."""
    if capture.order == NATIVE_ORDER:
        offsets = _walk_native(mm, size)
    else:
        offsets = _walk_struct(mm, size, capture.order)
    rec = np.frombuffer(offsets, dtype=np.int64) if len(offsets) else np.zeros(0, np.int64)
    buf = np.frombuffer(mm, dtype=np.uint8, count=size)
    dtype = np.dtype(capture.order + "u4")
    head = _gather(buf, rec, 16).view(dtype).reshape(-1, 4).astype(np.int64)
    caplen = head[:, 2]
    if len(rec):
        bad = np.flatnonzero(caplen > MAX_CAPLEN)
        if len(bad):
            raise CaptureError(
                capture.path, int(rec[bad[0]]), f"record length {caplen[bad[0]]} is impossible"
            )
        # The walk stops past the end; a last record cut short belongs to a file still being written.
        if rec[-1] + RECORD_HEADER_SIZE + caplen[-1] > size:
            rec, head, caplen = rec[:-1], head[:-1], caplen[:-1]
    scale = 1 if capture.nanosecond else 1000
    return Layout(
        offset=rec,
        data=rec + RECORD_HEADER_SIZE,
        caplen=caplen,
        orig_len=head[:, 3],
        ts_ns=head[:, 0] * 1_000_000_000 + head[:, 1] * scale,
        linktype=np.full(len(rec), capture.linktype, dtype=np.int64),
        meta_offsets=[],
        simple_blocks=False,
    )


def _walk_native(mm: mmap.mmap, size: int) -> array:
    """Record offsets, reading each length through one of four aligned uint32 views of the file."""
    whole = memoryview(mm)[:size]
    views = [whole[k : k + (size - k) // 4 * 4].cast("I") for k in range(4)]
    offsets = array("q")
    append = offsets.append
    off, limit = PCAP_HEADER_SIZE, size - RECORD_HEADER_SIZE
    try:
        while off <= limit:
            append(off)
            # caplen sits 8 bytes into the record header: same alignment as the header itself
            off += RECORD_HEADER_SIZE + views[off & 3][(off >> 2) + 2]
    finally:
        for view in views:
            view.release()
        whole.release()
    return offsets


def _walk_struct(mm: mmap.mmap, size: int, order: str) -> array:
    unpack = struct.Struct(order + "I").unpack_from
    offsets = array("q")
    append = offsets.append
    off, limit = PCAP_HEADER_SIZE, size - RECORD_HEADER_SIZE
    while off <= limit:
        append(off)
        off += RECORD_HEADER_SIZE + unpack(mm, off + 8)[0]
    return offsets


def walk_pcapng(capture: Capture) -> Layout:
    """Every complete packet block of a pcapng file (the block parser is per block anyway)."""
    columns = [array("q") for _ in range(6)]
    simple = False
    for record, kind in capture.packet_blocks():
        body_start = 4 if kind == PCAPNG_SPB else 20
        simple = simple or kind == PCAPNG_SPB
        for column, value in zip(
            columns,
            (
                record.offset,
                record.offset + 8 + body_start,
                len(record.data),
                record.orig_len,
                record.ts_ns,
                record.linktype,
            ),
            strict=True,
        ):
            column.append(value)
    arrays = [np.frombuffer(c, dtype=np.int64) if len(c) else np.zeros(0, np.int64) for c in columns]
    return Layout(*arrays, meta_offsets=capture.meta_offsets, simple_blocks=simple)


# ---------------------------------------------------------------- gathering


def _gather(buf: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes at each position, as an (n, width) C-contiguous uint8 array (clipped to the file)."""
    if not len(at):
        return np.zeros((0, width), dtype=np.uint8)
    at = np.minimum(at, len(buf) - width)
    return buf[at[:, None] + np.arange(width)]


def _be16(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    return _gather(buf, at, 2).view(">u2").ravel().astype(np.int64)


def _be32(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    return _gather(buf, at, 4).view(">u4").ravel().astype(np.int64)


# ---------------------------------------------------------------- dissection


def network_layer(buf: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IP header offset, IP version 4/6 or 0, needs the per-packet path) of every record."""
    n = len(layout.offset)
    start = np.zeros(n, dtype=np.int64)
    version = np.zeros(n, dtype=np.int64)
    slow = np.zeros(n, dtype=bool)
    for linktype in np.unique(layout.linktype):
        rows = np.flatnonzero(layout.linktype == linktype)
        data, caplen = layout.data[rows], layout.caplen[rows]
        found = _link_layer(buf, int(linktype), data, caplen)
        if found is None:
            continue
        start[rows], version[rows], slow[rows] = found
    return start, version, slow


def _from_ethertype(ethertype, offset, present):
    version = np.where(ethertype == d.ETH_IPV4, 4, np.where(ethertype == d.ETH_IPV6, 6, 0))
    return offset, np.where(present, version, 0)


def _link_layer(buf, linktype, data, caplen):
    end = data + caplen
    none = np.zeros(len(data), dtype=bool)
    if linktype == d.LINKTYPE_ETHERNET:
        present = caplen >= 14
        ethertype = _be16(buf, data + 12)
        offset = data + 14
        for _ in range(FAST_VLAN_TAGS):
            tagged = present & np.isin(ethertype, d.VLAN_TPIDS) & (offset + 4 <= end)
            if not tagged.any():
                break
            ethertype[tagged] = _be16(buf, offset[tagged] + 2)
            offset[tagged] += 4
        deeper = present & np.isin(ethertype, d.VLAN_TPIDS) & (offset + 4 <= end)
        offset, version = _from_ethertype(ethertype, offset, present)
        return offset, version, deeper
    if linktype == d.LINKTYPE_LINUX_SLL:
        return (*_from_ethertype(_be16(buf, data + 14), data + 16, caplen >= 16), none)
    if linktype == d.LINKTYPE_LINUX_SLL2:
        return (*_from_ethertype(_be16(buf, data), data + 20, caplen >= 20), none)
    if linktype in (d.LINKTYPE_NULL, d.LINKTYPE_LOOP):
        family = _be32(buf, data)
        if linktype == d.LINKTYPE_NULL:
            little = _gather(buf, data, 4).view("<u4").ravel().astype(np.int64)
            family = np.where(little > 0xFFFF, family, little)  # host byte order of the writer
        version = np.where(family == d.AF_INET, 4, np.where(np.isin(family, d.AF_INET6), 6, 0))
        return data + 4, np.where(caplen >= 4, version, 0), none
    if linktype in d.RAW_LINKTYPES:
        version = _gather(buf, data, 1).ravel().astype(np.int64) >> 4
        version = np.where(np.isin(version, (4, 6)) & (caplen >= 1), version, 0)
        return data, version, none
    if linktype in (d.LINKTYPE_IPV4, d.LINKTYPE_IPV6):
        return data, np.full(len(data), 4 if linktype == d.LINKTYPE_IPV4 else 6), none
    return None


def flow_fields(buf: np.ndarray, layout: Layout) -> tuple[Fields, np.ndarray]:
    """Flow fields of every record by the vectorised path, and the rows left for the per-packet path."""
    n = len(layout.offset)
    start, version, slow = network_layer(buf, layout)
    end = layout.data + layout.caplen
    f = Fields(
        has_flow=np.zeros(n, dtype=bool),
        src_hi=np.zeros(n, dtype=np.uint64),
        src_lo=np.zeros(n, dtype=np.uint64),
        dst_hi=np.zeros(n, dtype=np.uint64),
        dst_lo=np.zeros(n, dtype=np.uint64),
        proto=np.zeros(n, dtype=np.uint8),
        sport=np.zeros(n, dtype=np.uint16),
        dport=np.zeros(n, dtype=np.uint16),
    )
    transport = np.zeros(n, dtype=np.int64)
    # IPv4
    rows = np.flatnonzero((version == 4) & ~slow & (start + 20 <= end))
    head = _gather(buf, start[rows], 20)
    ihl = (head[:, 0] & 0x0F).astype(np.int64) * 4
    good = (head[:, 0] >> 4 == 4) & (ihl >= 20)
    fragment = (head[:, 6].astype(np.int64) << 8 | head[:, 7]) & 0x3FFF != 0
    slow[rows[good & fragment]] = True
    keep = good & ~fragment
    rows, head, ihl = rows[keep], head[keep], ihl[keep]
    addresses = np.ascontiguousarray(head[:, 12:20]).view(">u4").astype(np.uint64)
    f.src_lo[rows] = V4_MAPPED | addresses[:, 0]
    f.dst_lo[rows] = V4_MAPPED | addresses[:, 1]
    f.proto[rows] = head[:, 9]
    transport[rows] = start[rows] + ihl
    v4_rows = rows
    # IPv6
    rows = np.flatnonzero((version == 6) & ~slow & (start + 40 <= end))
    head = _gather(buf, start[rows], 40)
    good = head[:, 0] >> 4 == 6
    extension = np.isin(head[:, 6], SLOW_IPV6_HEADERS)
    slow[rows[good & extension]] = True
    keep = good & ~extension
    rows, head = rows[keep], head[keep]
    addresses = np.ascontiguousarray(head[:, 8:40]).view(">u8")
    f.src_hi[rows], f.src_lo[rows] = addresses[:, 0], addresses[:, 1]
    f.dst_hi[rows], f.dst_lo[rows] = addresses[:, 2], addresses[:, 3]
    f.proto[rows] = head[:, 6]
    transport[rows] = start[rows] + 40
    # Ports, where the protocol has them and the capture holds them
    rows = np.concatenate([v4_rows, rows])
    with_ports = np.isin(f.proto[rows], d.PORT_PROTOCOLS)
    readable = transport[rows] + 4 <= end[rows]
    f.has_flow[rows] = ~with_ports | readable
    rows = rows[with_ports & readable]
    ports = _gather(buf, transport[rows], 4).view(">u2")
    f.sport[rows], f.dport[rows] = ports[:, 0], ports[:, 1]
    return f, np.flatnonzero(slow)


def address_halves(address: bytes) -> tuple[int, int]:
    """A 16-byte address as two big-endian 64-bit halves."""
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def fill_slow_rows(mm: mmap.mmap, layout: Layout, fields: Fields, rows: np.ndarray) -> None:
    """Dissect the rows the vectorised path left, one by one, in file order (fragments need the order)."""
    first_fragments: dict[tuple, d.FlowFields] = {}
    for row in rows.tolist():
        start = int(layout.data[row])
        frame = bytes(mm[start : start + int(layout.caplen[row])])
        found = d.dissect(int(layout.linktype[row]), frame)
        if found is None:
            continue
        if found.later_fragment:
            found = first_fragments.get(found.frag_key)
            if found is None:
                continue  # its first fragment is not before it in this file: no flow known
        elif found.frag_key is not None:
            first_fragments[found.frag_key] = found
        fields.has_flow[row] = True
        fields.src_hi[row], fields.src_lo[row] = address_halves(found.src)
        fields.dst_hi[row], fields.dst_lo[row] = address_halves(found.dst)
        fields.proto[row] = found.proto
        fields.sport[row], fields.dport[row] = found.sport, found.dport
