"""The flow fields of every record of a capture file at once, with numpy over the mapped file.

Packets the vectorised path does not handle (IPv6 extension headers, fragments, deep VLAN stacks)
go through ``engine.dissection.packet`` one by one, in file order; they are rare on real links. Later
fragments follow the fragment rule of ``engine.dissection.packet``.

Two passes give the same columns: ``flow_columns`` (numpy, what the streaming path uses: it stays
light) and ``compiled_flow_columns`` (``engine.dissection.native``, what the index build uses: 5x faster,
at the price of loading numba, 0.5 s and 45 MB of a process). ``tests/engine/test_native.py``
holds them equal, every column of every record, over the captures that pin the index bytes.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from . import packet as d
from .recordtable import RecordTable, gather

FAST_VLAN_TAGS = 3  # deeper VLAN stacks take the per-packet path
LINK_BYTES = 32  # frame bytes read for the link layer: Ethernet with 3 VLAN tags fits
IP_BYTES = 64  # bytes read at the IP header: a 60-byte IPv4 header and the ports fit
BATCH = 1 << 18  # records dissected at once: bounds the bytes gathered
V4_MAPPED = np.uint64(0xFFFF << 32)
SLOW_IPV6_HEADERS = (*d.IPV6_EXTENSIONS, d.IPV6_FRAGMENT, d.IPV6_AH)


@dataclass
class FlowColumns:
    """Flow fields of every record: ``has_flow`` says which ones carry one."""

    has_flow: np.ndarray  # bool
    src_hi: np.ndarray  # uint64 halves of the 16-byte address
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray  # uint8
    sport: np.ndarray  # uint16
    dport: np.ndarray  # uint16


def address_halves(address: bytes) -> tuple[int, int]:
    """A 16-byte address as two big-endian 64-bit halves, as the columns hold it."""
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def _any_of(values: np.ndarray, choices: tuple[int, ...]) -> np.ndarray:
    found = values == choices[0]
    for choice in choices[1:]:
        found |= values == choice
    return found


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


def _new_columns(n: int) -> FlowColumns:
    return FlowColumns(
        has_flow=np.zeros(n, dtype=bool),
        src_hi=np.zeros(n, dtype=np.uint64),
        src_lo=np.zeros(n, dtype=np.uint64),
        dst_hi=np.zeros(n, dtype=np.uint64),
        dst_lo=np.zeros(n, dtype=np.uint64),
        proto=np.zeros(n, dtype=np.uint8),
        sport=np.zeros(n, dtype=np.uint16),
        dport=np.zeros(n, dtype=np.uint16),
    )


def flow_columns(mm: mmap.mmap | bytes, size: int, table: RecordTable) -> tuple[FlowColumns, np.ndarray]:
    """Flow fields of every record by the vectorised path, and the rows left for the per-packet path."""
    n = len(table.offset)
    fields = _new_columns(n)
    slow = np.zeros(n, dtype=bool)
    for first in range(0, n, BATCH):
        batch = slice(first, min(n, first + BATCH))
        _batch_fields(
            mm, size, table.data[batch], table.caplen[batch], table.linktype[batch], fields, slow, batch
        )
    return fields, np.flatnonzero(slow)


def compiled_flow_columns(
    mm: mmap.mmap | bytes, size: int, table: RecordTable
) -> tuple[FlowColumns, np.ndarray]:
    """What ``flow_columns`` gives, by one compiled pass over the records (``engine.dissection.native.flow_fields``)."""
    from . import native  # numba: loaded by index builds only

    f = _new_columns(len(table.offset))
    slow = np.zeros(len(table.offset), dtype=bool)
    buf = np.frombuffer(mm, dtype=np.uint8, count=size)
    columns = (f.has_flow, f.src_hi, f.src_lo, f.dst_hi, f.dst_lo, f.proto, f.sport, f.dport)
    # contiguous columns (a classic pcap's lengths are a column of its record headers): one
    # compiled variant of the loop serves every file
    data, caplen, linktype = (np.ascontiguousarray(c) for c in (table.data, table.caplen, table.linktype))
    native.flow_fields(buf, data, caplen, linktype, *columns, slow)
    del buf  # no view of the mapping may outlive the build
    return f, np.flatnonzero(slow)


def _batch_fields(mm, size, data, caplen, linktypes, f: FlowColumns, slow: np.ndarray, batch: slice) -> None:
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


def fill_slow_rows(mm: mmap.mmap, table: RecordTable, fields: FlowColumns, rows: np.ndarray) -> None:
    """Dissect the rows the vectorised path left, one by one, in file order, applying the fragment
    rule of ``engine.dissection.packet`` to later fragments (a later one may wait for its first fragment)."""
    first_fragments: dict[tuple, d.FlowFields] = {}
    waiting: dict[tuple, list[int]] = {}  # reassembly key -> later fragments with no first one yet
    for row in rows.tolist():
        start = int(table.data[row])
        frame = bytes(mm[start : start + int(table.caplen[row])])
        found = d.dissect(int(table.linktype[row]), frame)
        if found is None:
            continue
        if found.later_fragment:
            assert found.frag_key is not None  # a later fragment always has its reassembly key
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


def _set_row(fields: FlowColumns, row: int, found: d.FlowFields) -> None:
    fields.has_flow[row] = True
    fields.src_hi[row], fields.src_lo[row] = address_halves(found.src)
    fields.dst_hi[row], fields.dst_lo[row] = address_halves(found.dst)
    fields.proto[row] = found.proto
    fields.sport[row], fields.dport[row] = found.sport, found.dport
