"""Writing captures: every classic pcap and pcapng structure the project writes is packed here.

``CaptureWriter`` encodes an answer (classic pcap for one link type, pcapng with one interface per
link type for several), ``PcapngWriter`` always pcapng with each interface named after the answering
node; the merge (``engine.merge``) packs its headers and records with the functions below.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from . import pcapng
from .capture import MAX_CAPLEN, Record
from .pcap import FILE_HEADER, RECORD_HEADER
from .pcapng import OPTION_NAME, OPTION_TSOFFSET, OPTION_TSRESOL, tsresol_code

MAGIC_MICROSECONDS = 0xA1B2C3D4
MAGIC_NANOSECONDS = 0xA1B23C4D
END_OF_OPTIONS = b"\0\0\0\0"  # opt_endofopt
NS_PER_S = 1_000_000_000


def pcap_file_header(linktype: int, nanosecond: bool, snaplen: int = MAX_CAPLEN) -> bytes:
    """A little-endian classic pcap file header."""
    magic = MAGIC_NANOSECONDS if nanosecond else MAGIC_MICROSECONDS
    return FILE_HEADER.pack(magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record_bytes(record: Record, nanosecond: bool) -> bytes:
    """One classic pcap record (header and data) for ``record``."""
    secs, frac = divmod(record.ts_ns, NS_PER_S)
    if not nanosecond:
        frac //= 1000
    return RECORD_HEADER.pack(secs, frac, len(record.data), record.orig_len) + record.data


def pcapng_block(kind: int, body: bytes) -> bytes:
    """A little-endian pcapng block of type ``kind`` around ``body`` (padded to 4 bytes)."""
    body += b"\0" * (-len(body) % 4)
    head = struct.pack("<" + pcapng.BLOCK_HEAD_FIELDS, kind, len(body) + 12)
    return head + body + struct.pack("<I", len(body) + 12)


def pcapng_option(code: int, value: bytes) -> bytes:
    """One pcapng option (little-endian), padded to 4 bytes."""
    return struct.pack("<" + pcapng.OPTION_FIELDS, code, len(value)) + value + b"\0" * (-len(value) % 4)


def section_header_block() -> bytes:
    """A little-endian pcapng section header of unknown length."""
    return pcapng_block(pcapng.SHB, struct.pack("<" + pcapng.SHB_FIELDS, pcapng.BYTE_ORDER_MAGIC, 1, 0, -1))


def interface_block(
    linktype: int, snaplen: int, *, name: str | None = None, units_per_s: int = 1_000_000, offset_s: int = 0
) -> bytes:
    """A pcapng interface block: ``name`` (if_name), a time resolution other than microseconds
    (if_tsresol), an offset in seconds (if_tsoffset); no options block when there are none."""
    options = b""
    if name is not None:
        options += pcapng_option(OPTION_NAME, name.encode("utf-8", "replace"))
    if units_per_s != 1_000_000:
        options += pcapng_option(OPTION_TSRESOL, bytes([tsresol_code(units_per_s)]))
    if offset_s:
        options += pcapng_option(OPTION_TSOFFSET, struct.pack("<q", offset_s))
    if options:
        options += END_OF_OPTIONS
    return pcapng_block(pcapng.IDB, struct.pack("<" + pcapng.IDB_FIELDS, linktype, 0, snaplen) + options)


def enhanced_packet_block(interface: int, ticks: int, data: bytes, orig_len: int) -> bytes:
    """A little-endian pcapng Enhanced Packet Block of ``data`` on ``interface`` at ``ticks``."""
    head = struct.pack(
        "<" + pcapng.EPB_FIELDS, interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig_len
    )
    return pcapng_block(pcapng.EPB, head + data)


class CaptureWriter:
    """Encode records as a stream: classic pcap for one link type, pcapng (one interface per type) for several."""

    def __init__(self, linktypes: Iterable[int], nanosecond: bool = False, snaplen: int = MAX_CAPLEN):
        self.linktypes = sorted(set(linktypes)) or [1]
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.pcapng = len(self.linktypes) > 1
        self._interface = {lt: n for n, lt in enumerate(self.linktypes)}

    def header(self) -> bytes:
        if not self.pcapng:
            return pcap_file_header(self.linktypes[0], self.nanosecond, self.snaplen)
        return section_header_block() + b"".join(
            interface_block(linktype, self.snaplen, units_per_s=self._units_per_s)
            for linktype in self.linktypes
        )

    @property
    def _units_per_s(self) -> int:
        return NS_PER_S if self.nanosecond else 1_000_000

    def interface(self, linktype: int) -> int:
        """The answer's interface (pcapng) for records of ``linktype``; ValueError for one not in its header."""
        if linktype not in self._interface:
            # only a pcapng source declaring an interface after its first packet can get here
            raise ValueError(f"link type {linktype} was not declared in the answer's header")
        return self._interface[linktype]

    def record(self, record: Record) -> bytes:
        interface = self.interface(record.linktype)
        if not self.pcapng:
            return pcap_record_bytes(record, self.nanosecond)
        ticks = record.ts_ns if self.nanosecond else record.ts_ns // 1000
        return enhanced_packet_block(interface, ticks, record.data, record.orig_len)

    def stream(self, records: Iterable[Record], chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """The header, then the records, in chunks of about ``chunk_size`` bytes."""
        parts, size = [self.header()], 0
        for record in records:
            data = self.record(record)
            parts.append(data)
            size += len(data)
            if size >= chunk_size:
                yield b"".join(parts)
                parts, size = [], 0
        if parts:
            yield b"".join(parts)


class PcapngWriter(CaptureWriter):
    """Always pcapng, one interface per link type, each named (``if_name``) after the answering node."""

    def __init__(self, linktypes: Iterable[int], nanosecond: bool, name: str):
        super().__init__(linktypes, nanosecond)
        self.pcapng = True
        self.name = name

    def header(self) -> bytes:
        return section_header_block() + b"".join(
            interface_block(linktype, self.snaplen, name=self.name, units_per_s=self._units_per_s)
            for linktype in self.linktypes
        )
