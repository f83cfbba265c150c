"""The index file format, declared once; the index of ``pcap.1700000000`` is ``pcap.1700000000.idx``.

It names its capture by content (size and a digest of the first and last 4 KiB), not by path or
time, so it can be built in one directory and the capture moved next to it afterwards.

Format, version 4 (all integers little-endian)::

    header, 128 bytes (IndexHeader, HEADER)
      magic          8s   b"PARINDEX"
      version        u32  4 (3 is read too: the same without the ICMP columns)
      flags          u32  2 = pcapng capture, 4 = pcapng Simple Packet Blocks present (queries scan
                          such a file instead), 8 = the capture is damaged at damaged_at
      capture_size   u64  bytes of the capture when indexed
      digest         20s  sha1(capture size as u64, first 4096 bytes, last 4096 bytes)
      records        u64  complete records in the capture (with a flow or not)
      first_ns       i64  smallest record timestamp (ns since the epoch; 0 when no records)
      last_ns        i64  largest record timestamp
      flows          u32  rows of the flow table
      v4_flows       u32  of which the first v4_flows are IPv4 (both ends), the rest IPv6
      time_unit      u32  ns per unit of the flow times: 1 (nanosecond capture) or 1000
      columns        u32  entries of the column directory
      damaged_at     u64  with flag 8: the byte offset where the capture's damage begins (a record
                          that cannot be right, or the end of the file inside a record); the index
                          holds the records before it, and readers read no further (0 otherwise)
      checksum       u32  CRC-32 of the header (this field as 0) and the column directory
      reserved       to 128 bytes
    column directory, 24 bytes per column (COLUMN): name 8s, numpy dtype 4s ("<u4"), crc u32 (CRC-32
      of the column's bytes), count u64 (entries); the columns follow in directory order, each
      starting on an 8-byte boundary

Checksums, per section: opening an index checks the header's (header and directory: 0.1 ms for a
few thousand bytes), and a column's is checked the first time the column is read (``FlowIndex``),
so a lookup pays for the columns it reads, once per open index. A mismatch is ``IndexDamaged``:
the file is scanned instead, the damage reported (``engine.index.opening.on_damaged_index``), and
``reindex`` rebuilds it (its check reads every column).

    columns (F = flows, F4 = v4_flows, F6 = F - F4; "u2|u4" = the narrowest that holds the file):
      linktype  u4     link types of the records
      metablk   u8     offsets of the pcapng section header / interface blocks
      flow table, one entry per direction-folded flow, rows sorted by (family, cid):
        a4, b4        u4[F4]     IPv4 addresses of the two ends, (a, a_port) <= (b, b_port)
        a6hi, a6lo,   u8[F6]     IPv6 addresses as big-endian halves (rows F4.. of the table)
        b6hi, b6lo
        aport, bport  u2[F]      ports (0 for protocols without ports, ICMP included)
        proto         u1[F]      IP protocol (after IPv6 extension headers)
        flags         u1[F]      1 = the b end sent the flow's first packet in the capture
        first, last   u4|u8[F]   first and last packet time, time_unit after the header's first_ns
        packets       u1|u2|u4[F]  packets of the flow
        bytes         u2|u4|u8[F]  their original lengths, summed
        cid           u2[F]      Community ID lookup: the first two bytes (big-endian) of the flow's
                                 Community ID v1 (seed 0) sha1 digest, sorted in each family; 0
                                 for ICMP and ICMPv6, whose Community ID is per packet
      address lookup:
        byaddr4       u4[2*F4]   flow << 1 | end (0 = a, 1 = b) of both ends of every IPv4 flow,
                                 sorted by that end's address (then by entry)
        byaddr6       u4[2*F6]   the same for the IPv6 flows (flow ids counted from 0 for the table)
      port lookup:
        byport        u4[2*F]    flow << 1 | end of both ends of every flow, sorted by that end's port
      packet offsets:
        offsets       u1[...]    per flow, in table order, the record offsets of its packets,
                                 ascending, each as an unsigned LEB128 varint of its distance to
                                 the previous one of the flow (the first: its offset)
        offsetat      u4|u8[F/16+1]  where the varints of flows 0, 16, 32, ... start in ``offsets``
                                 (the last entry: its length)
      ICMP message flows (version 4; ``engine.index.icmp``): icmpflow, icmpbits, icmpsprt, icmpdprt,
        icmpfrst, icmplast, icmppkts, icmpbyts, icmpcid: the ICMP and ICMPv6 rows split by message
        type and code, as ``/flows`` lists them, so it reads no record of them

A flow is folded so that (a, a_port) <= (b, b_port), addresses compared as 16 bytes (IPv4 as
``::ffff:a.b.c.d``); a flow is IPv4 when both ends are. Later fragments are in the flow the
fragment rule of ``engine.dissect`` gives them. Every selector is a binary search: an address or
network is a range of ``byaddr4``/``byaddr6`` (searched through the flow table's addresses), a
port a run of ``byport``, a Community ID a range of the sorted ``cid`` of each family, confirmed by
recomputing the digest from the row (``engine.communityid``). Packet timestamps are not stored:
the query reads each record's header to clip time anyway.

Size: per packet, its varint: 1 byte for a distance to the flow's previous packet under 128
bytes, 2 under 16 KiB, 3 under 2 MiB, 4 under 256 MiB (a flow's first packet: its offset, 3-5
bytes). Per flow, 27 bytes of table for IPv4 with narrow counts (IPv6: +24; counts, bytes and
times widen per file, by up to 12 bytes, when a file needs it), 16 bytes of lookups (an address
and a port entry of 4 bytes for each end) and 0.25 of ``offsetat``. Measured (bench/RESULTS.md):
0.6% of the capture on the benchmark's mixed link, 4.8% on DNS-like short flows (57 bytes a flow
of 6 packets of 207 bytes), against 1.2% and 13.8% for version 1.

One rule decides whether an index answers for its capture (``decode_header`` and
``FlowIndex.describes``): its magic and version, its checksums, columns that fit the file, and the
capture's size and digest. A reader meeting any other index (versions 1 and 2 included; 3 is read,
its ICMP rows split from the records) gets None from
``open_index`` and scans the capture instead; ``reindex`` and the filer rebuild it. The index is
written with ``engine.durable.atomic_write`` (``temp_index_path``; ``TEMP_INDEX_PATTERN`` matches
what follows the capture's dot-name) and renamed into place.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import durable
from ..formats.source import capture_name

INDEX_VERSION = 4
READ_VERSIONS = (3, 4)  # version 3: no ICMP message columns (/flows then reads those flows' records)
MAGIC = b"PARINDEX"
INDEX_SUFFIX = ".idx"
HEADER_SIZE = 128
FLAG_PCAPNG = 2
FLAG_SIMPLE_BLOCKS = 4
FLAG_DAMAGED = 8
DIGEST_SPAN = 4096  # bytes of the capture's head and tail in its digest
OFFSET_GROUP = 16  # flows per ``offsetat`` entry
# What follows ``.<capture name>`` in the name of an index being written (``temp_index_path``).
TEMP_INDEX_PATTERN = re.escape(INDEX_SUFFIX) + r"\.[0-9]+" + re.escape(durable.TEMP_SUFFIX)


class IndexUnusable(ValueError):
    """An index that cannot be used (missing, damaged, another version, another capture)."""


class IndexDamaged(IndexUnusable):
    """An index of this version whose bytes are not what was written: a checksum does not match."""


class IndexHeader(NamedTuple):
    """The header, field by field, in file order (``HEADER``)."""

    magic: bytes
    version: int
    flags: int
    capture_size: int
    digest: bytes
    records: int
    first_ns: int
    last_ns: int
    flows: int
    v4_flows: int
    time_unit: int
    columns: int
    damaged_at: int = 0  # with FLAG_DAMAGED
    checksum: int = 0  # CRC-32 of the header (this field 0) and the column directory


HEADER = struct.Struct("<8sIIQ20sQqqIIIIQI")
COLUMN = struct.Struct("<8s4sIQ")  # name, dtype, crc32 of the column's bytes, count

COLUMN_TYPES = {np.dtype(t).str.encode(): np.dtype(t) for t in ("<u1", "<u2", "<u4", "<u8")}


class Column(NamedTuple):
    """An entry of the column directory."""

    name: str
    dtype: np.dtype
    entries: int
    crc: int


def encode_header(header: IndexHeader) -> bytes:
    """The header's HEADER_SIZE bytes."""
    head = HEADER.pack(*header)
    return head + b"\0" * (HEADER_SIZE - len(head))


def decode_header(data: bytes, path: str = "index") -> IndexHeader:
    """The header at the start of ``data``; IndexUnusable unless it is an index of this version."""
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        raise IndexUnusable(f"{path}: not an index")
    header = IndexHeader._make(HEADER.unpack_from(data))
    if header.version not in READ_VERSIONS:
        raise IndexUnusable(f"{path}: index version {header.version}, expected {INDEX_VERSION}")
    return header


def encode_column(name: str, column: np.ndarray, crc: int) -> bytes:
    """The directory entry of ``column`` whose bytes have the CRC-32 ``crc``."""
    return COLUMN.pack(name.encode(), column.dtype.str.encode(), crc, len(column))


def header_checksum(header: bytes, directory: bytes | memoryview) -> int:
    """The header's checksum: CRC-32 of its bytes with the checksum field as 0, then the directory."""
    at = HEADER.size - 4
    return zlib.crc32(directory, zlib.crc32(bytes(header[:at]) + b"\0\0\0\0" + bytes(header[at + 4 :])))


def decode_column(data: bytes | mmap.mmap, at: int, path: str) -> Column:
    """The directory entry at ``at``; IndexUnusable for one that names no integer column."""
    name, dtype, crc, count = COLUMN.unpack_from(data, at)
    found = COLUMN_TYPES.get(dtype.rstrip(b"\0"))
    if found is None:
        raise IndexUnusable(f"{path}: a column of an unknown type")
    return Column(name.rstrip(b"\0").decode("ascii", "replace"), found, count, crc)


def narrowest(values: np.ndarray, smallest: str = "<u1") -> np.ndarray:
    """``values`` (non-negative) as the narrowest little-endian unsigned type that holds them all."""
    top = int(values.max()) if len(values) else 0
    for dtype in ("<u1", "<u2", "<u4", "<u8"):
        if np.dtype(dtype).itemsize >= np.dtype(smallest).itemsize and top < 1 << (
            8 * np.dtype(dtype).itemsize
        ):
            return values.astype(dtype)
    raise ValueError(f"{top} does not fit 64 bits")


# ---------------------------------------------------------------- varints


def decode_varints(data: np.ndarray) -> np.ndarray:
    """The values (uint64) of concatenated unsigned LEB128 varints; ValueError if the last is cut."""
    if not len(data):
        return np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero(data < 0x80)
    if not len(ends) or ends[-1] != len(data) - 1:
        raise ValueError("a varint is cut short")
    starts = np.empty(len(ends), dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > 9:
        raise ValueError("a varint longer than 9 bytes")
    position = np.arange(len(data)) - np.repeat(starts, lengths)
    parts = (data & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.add.reduceat(parts, starts)


def index_path(capture: str | os.PathLike) -> Path:
    """Where the index of ``capture`` lives: beside it, ``<capture name>.idx`` (in every tier: a
    compressed ``<name>.zst`` or archived ``<name>.archived`` capture keeps ``<name>.idx``)."""
    return Path(capture_name(capture) + INDEX_SUFFIX)


def temp_index_path(out: str | os.PathLike) -> Path:
    """The temporary name an index is written under before it is renamed to ``out``."""
    return durable.temp_path(out)
