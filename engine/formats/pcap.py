"""Reading classic pcap files: micro- or nanosecond, either byte order, chosen by the magic number."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from .capture import MAX_TS_NS, Capture, CaptureError, IncompleteHeader, Record, check_caplen, check_time


class Flavour(NamedTuple):
    """What a classic pcap magic number says: the byte order and the timestamp precision."""

    order: str
    nanosecond: bool


MAGICS = {
    b"\xd4\xc3\xb2\xa1": Flavour("<", False),
    b"\xa1\xb2\xc3\xd4": Flavour(">", False),
    b"\x4d\x3c\xb2\xa1": Flavour("<", True),
    b"\xa1\xb2\x3c\x4d": Flavour(">", True),
}


class FileHeader(NamedTuple):
    magic: int
    major: int
    minor: int
    thiszone: int
    sigfigs: int
    snaplen: int
    linktype: int  # the upper 16 bits carry FCS information


# The layouts, declared once; the byte order is the file's ("<" for what we write).
FILE_HEADER_FIELDS = "IHHiIII"
RECORD_HEADER_FIELDS = "IIII"
FILE_HEADER = struct.Struct("<" + FILE_HEADER_FIELDS)
RECORD_HEADER = struct.Struct("<" + RECORD_HEADER_FIELDS)
FILE_HEADER_SIZE = FILE_HEADER.size
RECORD_HEADER_SIZE = RECORD_HEADER.size
READ_CHUNK = 1 << 20


class PcapCapture(Capture):
    """A classic pcap file: one link type, records one after another after a 24-byte header."""

    kind = "pcap"

    def _open(self) -> None:
        head = self.read(0, FILE_HEADER_SIZE)
        if len(head) < FILE_HEADER_SIZE:
            raise IncompleteHeader(self.path, 0, "no complete pcap file header yet")
        flavour = MAGICS.get(head[:4])
        if flavour is None:
            raise CaptureError(self.path, 0, f"not a classic pcap file (magic {head[:4].hex()})")
        self.order = flavour.order
        header = FileHeader._make(struct.unpack(self.order + FILE_HEADER_FIELDS, head))
        self.snaplen = header.snaplen
        self.linktype = header.linktype & 0xFFFF
        self.record_header = struct.Struct(self.order + RECORD_HEADER_FIELDS)
        self.scale = 1 if flavour.nanosecond else 1000  # ns per unit of the fraction

    @property
    def linktypes(self) -> list[int]:
        return [self.linktype]

    @property
    def nanosecond(self) -> bool:
        return self.scale == 1

    def __iter__(self) -> Iterator[Record]:
        unpack = self.record_header.unpack_from
        scale, linktype = self.scale, self.linktype
        read = self.source.read
        base, buf, i = FILE_HEADER_SIZE, b"", 0
        while True:
            if len(buf) - i < RECORD_HEADER_SIZE:
                more = read(base + len(buf), READ_CHUNK)
                if not more:
                    self.ends_at(base + len(buf))
                    return  # end of file, possibly inside a record header: a file still being written
                base, buf, i = base + i, buf[i:] + more, 0
                continue
            secs, frac, caplen, orig_len = unpack(buf, i)
            check_caplen(self.path, base + i, caplen)
            end = i + RECORD_HEADER_SIZE + caplen
            if end > len(buf):
                more = read(base + len(buf), max(READ_CHUNK, end - len(buf)))
                if not more:
                    self.ends_at(base + len(buf))
                    return  # a record cut short by the end of the file
                base, buf, i = base + i, buf[i:] + more, 0
                continue
            ts = secs * 1_000_000_000 + frac * scale
            if ts >= MAX_TS_NS:  # only a fraction of a second or more can get it there
                check_time(self.path, base + i, ts)
            yield Record(base + i, ts, linktype, buf[i + RECORD_HEADER_SIZE : end], orig_len)
            i = end

    def record_at(self, offset: int) -> Record | None:
        head = self.read(offset, RECORD_HEADER_SIZE)
        if len(head) < RECORD_HEADER_SIZE:
            return None
        secs, frac, caplen, orig_len = self.record_header.unpack(head)
        check_caplen(self.path, offset, caplen)
        data = self.read(offset + RECORD_HEADER_SIZE, caplen)
        if len(data) < caplen:
            return None
        ts = secs * 1_000_000_000 + frac * self.scale
        check_time(self.path, offset, ts)
        return Record(offset, ts, self.linktype, data, orig_len)
