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
    flow table       96-byte rows, one per direction-folded flow (``FLOW_DTYPE``):
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
ports. Later fragments are in the flow the fragment rule of ``engine.dissect`` gives them. Packet timestamps are not stored: the query reads each record's header to
clip time anyway.

One rule decides whether an index answers for its capture (``usable_header`` and the content
check of ``engine.index.read``): its magic and version, sizes that agree with the header, and the
capture's size and digest. A reader meeting any other index gets None from ``open_index`` and
scans the capture instead; ``reindex`` and the filer rebuild it. The index is written under a
temporary dot-name beside it (``temp_index_path``; ``TEMP_INDEX_PATTERN`` matches what follows
the capture's dot-name) and renamed into place. Sizes: 4 bytes per packet of a flow plus
about 136 bytes per flow, about 1.2% of the capture on the benchmark's traffic mix.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import NamedTuple

INDEX_VERSION = 1
MAGIC = b"PARINDEX"
INDEX_SUFFIX = ".idx"
HEADER_SIZE = 128
FLAG_OFFSETS64 = 1
FLAG_PCAPNG = 2
FLAG_SIMPLE_BLOCKS = 4
DIGEST_SPAN = 4096  # bytes of the capture's head and tail in its digest
# What follows ``.<capture name>`` in the name of an index being written (``temp_index_path``).
TEMP_INDEX_PATTERN = re.escape(INDEX_SUFFIX) + r"\.[0-9]+\.tmp"


class IndexUnusable(ValueError):
    """An index that cannot be used (missing, damaged, another version, another capture)."""


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
    linktypes: int
    meta_blocks: int
    reserved: int
    entries: int


HEADER = struct.Struct("<8sIIQ20sQqqIIIIQ")


def encode_header(header: IndexHeader) -> bytes:
    """The header's HEADER_SIZE bytes."""
    head = HEADER.pack(*header)
    return head + b"\0" * (HEADER_SIZE - len(head))


def decode_header(data: bytes, path: str = "index") -> IndexHeader:
    """The header at the start of ``data``; IndexUnusable unless it is an index of this version."""
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        raise IndexUnusable(f"{path}: not an index")
    header = IndexHeader._make(HEADER.unpack_from(data))
    if header.version != INDEX_VERSION:
        raise IndexUnusable(f"{path}: index version {header.version}, expected {INDEX_VERSION}")
    return header


def index_path(capture: str | os.PathLike) -> Path:
    """Where the index of ``capture`` lives: beside it, ``<capture name>.idx``."""
    return Path(os.fspath(capture) + INDEX_SUFFIX)


def temp_index_path(out: Path) -> Path:
    """The temporary name an index is written under before it is renamed to ``out``."""
    return out.with_name(f".{out.name}.{os.getpid()}.tmp")
