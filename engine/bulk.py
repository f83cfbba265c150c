"""Whole-file record walk and vectorised dissection, for building an index in one pass.

The walk over the record headers is the only per-packet Python; the flow fields are then gathered
for all records at once with numpy fancy indexing into the memory-mapped file. Packets the
vectorised path does not handle (IPv6 extension headers, fragments, deep VLAN stacks) go through
``engine.dissect`` one by one; they are rare on real links. A later fragment is tied to the flow
of a first fragment with its reassembly key in the same file: the latest one before it, else the
earliest one after it (the rule of ``engine.dissect``, which the scan in ``engine.query``
applies too).
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
LINK_BYTES = 32  # frame bytes read for the link layer: Ethernet with 3 VLAN tags fits
IP_BYTES = 64  # bytes read at the IP header: a 60-byte IPv4 header and the ports fit
BATCH = 1 << 18  # records dissected at once: bounds the bytes gathered
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
    head = gather(mm, size, rec, RECORD_HEADER_SIZE).view(capture.order + "u4").astype(np.int64)
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
    """Record offsets, reading each length through one of four aligned uint32 views of the file.

    The loop has no end test of its own: reading past the last view ends it (IndexError); the
    offsets it took past the last whole record header are dropped after it.
    """
    whole = memoryview(mm)[:size]
    views = [whole[k : k + (size - k) // 4 * 4].cast("I") for k in range(4)]
    offsets = array("q")
    append = offsets.append
    off = PCAP_HEADER_SIZE
    try:
        while True:
            append(off)
            # caplen sits 8 bytes into the record header: same alignment as the header itself
            off += RECORD_HEADER_SIZE + views[off & 3][(off >> 2) + 2]
    except IndexError:
        pass
    finally:
        for view in views:
            view.release()
        whole.release()
    while offsets and offsets[-1] > size - RECORD_HEADER_SIZE:
        offsets.pop()
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


def gather(mm: mmap.mmap | bytes, size: int, at: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes from each position ``at`` as an (n, width) uint8 array; zeros past the end of the file.

    One fancy-indexing gather through a view whose elements are ``width``-byte strings starting at
    every byte of the file (stride 1), so each record costs one copy, not one per byte.
    """
    last = size - width  # the last position where a whole element fits
    if last < 0:
        out = np.zeros((len(at), width), dtype=np.uint8)
        inside = np.zeros(len(at), dtype=bool)
    else:
        view = np.ndarray((last + 1,), dtype=f"V{width}", buffer=mm, strides=(1,))
        inside = at <= last
        if inside.all():
            return view[at].view(np.uint8).reshape(-1, width)
        out = np.zeros((len(at), width), dtype=np.uint8)
        out[inside] = view[at[inside]].view(np.uint8).reshape(-1, width)
        del view
    for row in np.flatnonzero(~inside).tolist():  # the last records of the file
        tail = mm[int(at[row]) : size]
        out[row, : len(tail)] = np.frombuffer(tail, dtype=np.uint8)
    return out


def _be16(two: np.ndarray) -> np.ndarray:
    return two[:, 0].astype(np.int64) << 8 | two[:, 1]


def _any_of(values: np.ndarray, choices: tuple[int, ...]) -> np.ndarray:
    found = values == choices[0]
    for choice in choices[1:]:
        found |= values == choice
    return found


# ---------------------------------------------------------------- dissection


def _link_layer(linktype: int, link: np.ndarray, caplen: np.ndarray):
    """(IP header offset, IP version 4/6 or 0, needs the per-packet path) of frames of one link type.

    ``link`` holds the first LINK_BYTES of each frame.
    """
    n = len(link)
    start = np.zeros(n, dtype=np.int64)
    slow = np.zeros(n, dtype=bool)
    words = link.view(">u2")  # the frame head as big-endian 16-bit words, no copy
    if linktype == d.LINKTYPE_ETHERNET:
        ethertype = words[:, 6]
        start += 14
        for tag in range(FAST_VLAN_TAGS):
            # a frame tagged now was tagged before: all tagged frames have the same offset here
            tagged = _any_of(ethertype, d.VLAN_TPIDS) & (caplen >= 18 + 4 * tag)
            if not tagged.any():
                break
            ethertype = np.where(tagged, words[:, 8 + 2 * tag], ethertype)
            start += tagged * 4
        slow = _any_of(ethertype, d.VLAN_TPIDS) & (start + 4 <= caplen)  # deeper stacks
        return start, _ethertype_version(ethertype, caplen >= 14), slow
    if linktype == d.LINKTYPE_LINUX_SLL:
        return start + 16, _ethertype_version(words[:, 7], caplen >= 16), slow
    if linktype == d.LINKTYPE_LINUX_SLL2:
        return start + 20, _ethertype_version(words[:, 0], caplen >= 20), slow
    if linktype in (d.LINKTYPE_NULL, d.LINKTYPE_LOOP):
        four = np.ascontiguousarray(link[:, :4])
        family = four.view(">u4").ravel().astype(np.int64)
        if linktype == d.LINKTYPE_NULL:
            little = four.view("<u4").ravel().astype(np.int64)
            family = np.where(little > 0xFFFF, family, little)  # host byte order of the writer
        version = np.where(family == d.AF_INET, 4, np.where(_any_of(family, d.AF_INET6), 6, 0))
        return start + 4, np.where(caplen >= 4, version, 0), slow
    if linktype in d.RAW_LINKTYPES:
        version = link[:, 0].astype(np.int64) >> 4
        return start, np.where(((version == 4) | (version == 6)) & (caplen >= 1), version, 0), slow
    if linktype in (d.LINKTYPE_IPV4, d.LINKTYPE_IPV6):
        return start, np.full(n, 4 if linktype == d.LINKTYPE_IPV4 else 6), slow
    return start, np.zeros(n, dtype=np.int64), slow


def _ethertype_version(ethertype: np.ndarray, present: np.ndarray) -> np.ndarray:
    version = (ethertype == d.ETH_IPV4).astype(np.int8) * 4 + (ethertype == d.ETH_IPV6).astype(np.int8) * 6
    return version * present


def _new_fields(n: int) -> Fields:
    return Fields(
        has_flow=np.zeros(n, dtype=bool),
        src_hi=np.zeros(n, dtype=np.uint64),
        src_lo=np.zeros(n, dtype=np.uint64),
        dst_hi=np.zeros(n, dtype=np.uint64),
        dst_lo=np.zeros(n, dtype=np.uint64),
        proto=np.zeros(n, dtype=np.uint8),
        sport=np.zeros(n, dtype=np.uint16),
        dport=np.zeros(n, dtype=np.uint16),
    )


def flow_fields(mm: mmap.mmap | bytes, size: int, layout: Layout) -> tuple[Fields, np.ndarray]:
    """Flow fields of every record by the vectorised path, and the rows left for the per-packet path."""
    n = len(layout.offset)
    fields = _new_fields(n)
    slow = np.zeros(n, dtype=bool)
    for first in range(0, n, BATCH):
        batch = slice(first, min(n, first + BATCH))
        _batch_fields(
            mm, size, layout.data[batch], layout.caplen[batch], layout.linktype[batch], fields, slow, batch
        )
    return fields, np.flatnonzero(slow)


def _batch_fields(mm, size, data, caplen, linktypes, f: Fields, slow: np.ndarray, batch: slice) -> None:
    n = len(data)
    link = gather(mm, size, data, LINK_BYTES)
    if not n:
        return
    if (linktypes == linktypes[0]).all():  # a classic pcap file: always
        start, version, batch_slow = _link_layer(int(linktypes[0]), link, caplen)
    else:
        start = np.zeros(n, dtype=np.int64)
        version = np.zeros(n, dtype=np.int64)
        batch_slow = np.zeros(n, dtype=bool)
        for linktype in np.unique(linktypes).tolist():
            rows = linktypes == linktype
            start[rows], version[rows], batch_slow[rows] = _link_layer(linktype, link[rows], caplen[rows])
    # IP header and ports in one gather at each packet's IP header: addresses and ports fall on
    # fixed aligned columns of the u16/u32/u64 views of the rows.
    ip = gather(mm, size, data + start, IP_BYTES)
    u16, u32, u64 = ip.view(">u2"), ip.view(">u4"), ip.view(">u8")
    room = caplen - start
    nibble = ip[:, 0] >> 4
    ihl = (ip[:, 0] & 0x0F).astype(np.int64) * 4
    v4 = (version == 4) & (nibble == 4) & (ihl >= 20) & (room >= 20) & ~batch_slow
    v6 = (version == 6) & (nibble == 6) & (room >= 40) & ~batch_slow
    fragment = v4 & (u16[:, 3] & 0x3FFF != 0)
    extension = v6 & _any_of(ip[:, 6], SLOW_IPV6_HEADERS)
    batch_slow |= fragment | extension
    v4 &= ~fragment
    v6 &= ~extension
    proto = np.where(v4, ip[:, 9], ip[:, 6])
    transport = np.where(v4, ihl, 40)
    with_ports = _any_of(proto, d.PORT_PROTOCOLS)
    has_flow = (v4 | v6) & (~with_ports | (transport + 4 <= room))
    rows = np.arange(n)
    port_col = np.minimum(transport, IP_BYTES - 4) >> 1
    sport = np.where(with_ports, u16[rows, port_col], 0)
    dport = np.where(with_ports, u16[rows, port_col + 1], 0)
    f.has_flow[batch] = has_flow
    f.src_hi[batch] = np.where(v6, u64[:, 1], 0)
    f.dst_hi[batch] = np.where(v6, u64[:, 3], 0)
    f.src_lo[batch] = np.where(v6, u64[:, 2], V4_MAPPED | u32[:, 3])
    f.dst_lo[batch] = np.where(v6, u64[:, 4], V4_MAPPED | u32[:, 4])
    f.proto[batch] = proto
    f.sport[batch], f.dport[batch] = sport, dport
    slow[batch] = batch_slow


def address_halves(address: bytes) -> tuple[int, int]:
    """A 16-byte address as two big-endian 64-bit halves."""
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def fill_slow_rows(mm: mmap.mmap, layout: Layout, fields: Fields, rows: np.ndarray) -> None:
    """Dissect the rows the vectorised path left, one by one, in file order (fragments need the order).

    A later fragment takes the flow of the latest first fragment with its reassembly key before it;
    when there is none, of the first one after it (``engine.dissect`` states the rule).
    """
    first_fragments: dict[tuple, d.FlowFields] = {}
    waiting: dict[tuple, list[int]] = {}  # reassembly key -> later fragments with no first one yet
    for row in rows.tolist():
        start = int(layout.data[row])
        frame = bytes(mm[start : start + int(layout.caplen[row])])
        found = d.dissect(int(layout.linktype[row]), frame)
        if found is None:
            continue
        if found.later_fragment:
            first = first_fragments.get(found.frag_key)
            if first is None:
                waiting.setdefault(found.frag_key, []).append(row)
                continue
            found = first
        elif found.frag_key is not None:
            first_fragments[found.frag_key] = found
            for earlier in waiting.pop(found.frag_key, ()):
                _set_row(fields, earlier, found)
        _set_row(fields, row, found)
    # what is still waiting has no first fragment in this file: no flow known


def _set_row(fields: Fields, row: int, found: d.FlowFields) -> None:
    fields.has_flow[row] = True
    fields.src_hi[row], fields.src_lo[row] = address_halves(found.src)
    fields.dst_hi[row], fields.dst_lo[row] = address_halves(found.dst)
    fields.proto[row] = found.proto
    fields.sport[row], fields.dport[row] = found.sport, found.dport
