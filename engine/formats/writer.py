"""Writing answers: classic pcap for one link type, pcapng (one interface per link type) for several."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from . import pcapng
from .capture import MAX_CAPLEN, Record
from .pcap import FILE_HEADER, RECORD_HEADER

MAGIC_MICROSECONDS = 0xA1B2C3D4
MAGIC_NANOSECONDS = 0xA1B23C4D
TSRESOL_NANOSECONDS = b"\x09\x00\x01\x00\x09\x00\x00\x00"  # option if_tsresol = 9, padded


def pcap_file_header(linktype: int, nanosecond: bool, snaplen: int = MAX_CAPLEN) -> bytes:
    """A little-endian classic pcap file header."""
    magic = MAGIC_NANOSECONDS if nanosecond else MAGIC_MICROSECONDS
    return FILE_HEADER.pack(magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record_bytes(record: Record, nanosecond: bool) -> bytes:
    """One classic pcap record (header and data) for ``record``."""
    secs, frac = divmod(record.ts_ns, 1_000_000_000)
    if not nanosecond:
        frac //= 1000
    return RECORD_HEADER.pack(secs, frac, len(record.data), record.orig_len) + record.data


def pcapng_block(kind: int, body: bytes) -> bytes:
    """A little-endian pcapng block of type ``kind`` around ``body`` (padded to 4 bytes)."""
    body += b"\0" * (-len(body) % 4)
    head = struct.pack("<" + pcapng.BLOCK_HEAD_FIELDS, kind, len(body) + 12)
    return head + body + struct.pack("<I", len(body) + 12)


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
        section = struct.pack("<" + pcapng.SHB_FIELDS, pcapng.BYTE_ORDER_MAGIC, 1, 0, -1)
        parts = [pcapng_block(pcapng.SHB, section)]
        options = TSRESOL_NANOSECONDS + b"\0\0\0\0" if self.nanosecond else b""
        for linktype in self.linktypes:
            interface = struct.pack("<" + pcapng.IDB_FIELDS, linktype, 0, self.snaplen)
            parts.append(pcapng_block(pcapng.IDB, interface + options))
        return b"".join(parts)

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
        head = struct.pack(
            "<" + pcapng.EPB_FIELDS,
            interface,
            ticks >> 32,
            ticks & 0xFFFFFFFF,
            len(record.data),
            record.orig_len,
        )
        return pcapng_block(pcapng.EPB, head + record.data)

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
