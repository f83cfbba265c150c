"""Read and write capture files: classic pcap (micro/nanosecond, either byte order) and pcapng.

Reading yields ``Record(offset, ts_ns, linktype, data, orig_len)``: ``offset`` is where the record
(classic pcap) or block (pcapng) starts in the file, ``ts_ns`` integer nanoseconds since the epoch.
A record cut short by the end of the file (a file still being written) ends the read cleanly; a
record that cannot be right (impossible length, broken block, a pcapng time a classic pcap cannot
hold: before 1970 or from 2106 on) raises ``CaptureError`` naming the file and the byte offset. A pcapng Simple Packet Block has no timestamp: it takes the timestamp of
the packet before it in the file (0 when none).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

MAX_CAPLEN = 262144  # libpcap's largest snapshot length for the link types we read
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_OPB = 2  # obsolete Packet Block
PCAPNG_SPB = 3
PCAPNG_EPB = 6
PCAPNG_PACKET_BLOCKS = (PCAPNG_EPB, PCAPNG_SPB, PCAPNG_OPB)
PCAPNG_BYTE_ORDER = 0x1A2B3C4D
MAX_BLOCK = 16 << 20  # a block longer than this is damage, not a packet
MAX_TS_NS = (1 << 32) * 1_000_000_000  # a classic pcap (the answer) holds u32 seconds since 1970

# Classic pcap: the magic number picks byte order and timestamp precision.
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
# The layouts, declared once; the byte order is the file's ("<" for what we write).
PCAP_HEADER_FIELDS = "IHHiIII"  # magic, major, minor, thiszone, sigfigs, snaplen, linktype
PCAP_RECORD_FIELDS = "IIII"  # seconds, fraction, captured length, original length
PCAP_HEADER = struct.Struct("<" + PCAP_HEADER_FIELDS)
PCAP_RECORD = struct.Struct("<" + PCAP_RECORD_FIELDS)
PCAP_HEADER_SIZE = PCAP_HEADER.size
RECORD_HEADER_SIZE = PCAP_RECORD.size
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
READ_CHUNK = 1 << 20
READ_WINDOW = 1 << 16  # random access: one read serves the records near each other


class CaptureError(ValueError):
    """A capture file that cannot be read; the message names the file and the byte offset."""

    def __init__(self, path: str | Path, offset: int, problem: str):
        super().__init__(f"{path}: {problem} at byte offset {offset}")
        self.path = str(path)
        self.offset = offset


class IncompleteHeader(CaptureError):
    """A file too short to hold its own file header yet (just created, still being written)."""


class CaptureTruncated(CaptureError):
    """The file ends before the size it had when it was opened: records it held have disappeared.

    Capture files only grow while they are written, so a file that shrinks under a reader (a
    truncation, a capture tool restarted over the same name) is damage: an answer that met it
    would look complete while missing records that were there when it began.
    """


class Record(NamedTuple):
    offset: int
    ts_ns: int
    linktype: int
    data: bytes
    orig_len: int


class Interface(NamedTuple):
    """A pcapng interface: its link type and how to turn its timestamps into nanoseconds."""

    linktype: int
    snaplen: int
    units_per_s: int  # timestamp units per second (if_tsresol)
    offset_s: int  # if_tsoffset, seconds added to every timestamp

    def ts_ns(self, ticks: int) -> int:
        return (self.offset_s * 1_000_000_000) + ticks * 1_000_000_000 // self.units_per_s


def _tsresol(value: int) -> int:
    return 1 << (value & 0x7F) if value & 0x80 else 10 ** (value & 0x7F)


class Capture:
    """An open capture file: iterate it for records in file order, or read one record at an offset."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()/__exit__
        try:
            self.opened_size = self.size()  # what a reader may count on; a live file may grow past it
            self._open()
        except BaseException:
            self._file.close()
            raise

    # ------------------------------------------------------------ opening

    def _open(self) -> None:
        head = os.pread(self._file.fileno(), PCAP_HEADER_SIZE, 0)
        if len(head) < 4:
            raise IncompleteHeader(self.path, 0, "no file header yet")
        magic = head[:4]
        if magic in PCAP_MAGICS:
            if len(head) < PCAP_HEADER_SIZE:
                raise IncompleteHeader(self.path, 0, "no complete pcap file header yet")
            self.kind = "pcap"
            self.order, nanosecond = PCAP_MAGICS[magic]
            fields = struct.unpack(self.order + PCAP_HEADER_FIELDS, head)
            self.snaplen = fields[5]
            self.linktype = fields[6] & 0xFFFF  # the upper bits carry FCS information
            self.data_start = PCAP_HEADER_SIZE
            self._record = struct.Struct(self.order + PCAP_RECORD_FIELDS)
            self._scale = 1 if nanosecond else 1000
        elif magic == PCAPNG_MAGIC:
            self.kind = "pcapng"
            self._seen_idbs: set[int] = set()
            self.sections: list[tuple[int, str, list[Interface]]] = []  # (offset, byte order, interfaces)
            self._last_ts = 0
            self._read_pcapng_preamble()
        else:
            raise CaptureError(self.path, 0, f"not a pcap or pcapng file (magic {magic.hex()})")

    def _read_pcapng_preamble(self) -> None:
        """Read the section header and the interfaces declared before the first packet."""
        offset, order = 0, "<"
        while True:
            block = self._block_at(offset, order)
            if block is None:
                if offset == 0:
                    raise IncompleteHeader(self.path, 0, "no complete pcapng section header yet")
                break
            kind, length, body, order = block
            if kind in PCAPNG_PACKET_BLOCKS:
                break
            if kind in (PCAPNG_SHB, PCAPNG_IDB):
                self._meta_block(offset, kind, body, order)
            # other blocks (name resolution, statistics, custom) may come before an interface block
            offset += length
        self.data_start = 0
        interfaces = self.sections[0][2]
        self.linktype = interfaces[0].linktype if interfaces else 1
        self.snaplen = max((i.snaplen for i in interfaces), default=0) or MAX_CAPLEN

    def _interfaces(self) -> list[Interface]:
        return [i for section in self.sections for i in section[2]]

    @property
    def linktypes(self) -> list[int]:
        """Link types of the records: the file's, or those of every pcapng interface read so far."""
        if self.kind == "pcap":
            return [self.linktype]
        return sorted({i.linktype for i in self._interfaces()})

    @property
    def nanosecond(self) -> bool:
        """True when times are finer than microseconds (on any pcapng interface read so far)."""
        if self.kind == "pcap":
            return self._scale == 1
        return any(i.units_per_s > 1_000_000 for i in self._interfaces())

    # ------------------------------------------------------------ context

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file; see ``ends_at``)."""
        data = os.pread(self._file.fileno(), size, offset)
        if len(data) < size:
            self.ends_at(offset + len(data))
        return data

    def ends_at(self, offset: int) -> None:
        """A read met the end of the file at ``offset``: CaptureTruncated if the file was longer when opened."""
        if offset < self.opened_size:
            raise CaptureTruncated(
                self.path, offset, f"the file shrank while being read (it held {self.opened_size} bytes)"
            )

    # ------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[Record]:
        return self._iter_pcap() if self.kind == "pcap" else self._iter_pcapng()

    def _chunks(self, start: int) -> Iterator[tuple[int, bytes]]:
        """(file offset, bytes) of consecutive reads from ``start``."""
        offset = start
        while True:
            data = os.pread(self._file.fileno(), READ_CHUNK, offset)
            if not data:
                return
            yield offset, data
            offset += len(data)

    def _iter_pcap(self) -> Iterator[Record]:
        unpack = self._record.unpack_from
        scale, linktype = self._scale, self.linktype
        fd = self._file.fileno()
        base, buf, i = PCAP_HEADER_SIZE, b"", 0
        while True:
            if len(buf) - i < RECORD_HEADER_SIZE:
                more = os.pread(fd, READ_CHUNK, base + len(buf))
                if not more:
                    self.ends_at(base + len(buf))
                    return  # end of file, possibly inside a record header: a file still being written
                base, buf, i = base + i, buf[i:] + more, 0
                continue
            secs, frac, caplen, orig_len = unpack(buf, i)
            if caplen > MAX_CAPLEN:
                raise CaptureError(self.path, base + i, f"record length {caplen} is impossible")
            end = i + RECORD_HEADER_SIZE + caplen
            if end > len(buf):
                more = os.pread(fd, max(READ_CHUNK, end - len(buf)), base + len(buf))
                if not more:
                    self.ends_at(base + len(buf))
                    return  # a record cut short by the end of the file
                base, buf, i = base + i, buf[i:] + more, 0
                continue
            yield Record(base + i, secs * 1_000_000_000 + frac * scale, linktype, buf[i + 16 : end], orig_len)
            i = end

    def _iter_pcapng(self) -> Iterator[Record]:
        for record, _ in self.packet_blocks():
            yield record

    def packet_blocks(self) -> Iterator[tuple[Record, int]]:
        """pcapng: (record, block type) of every packet block, in file order."""
        offset, order = 0, "<"
        section: tuple[int, str, list[Interface]] | None = None
        while True:
            block = self._block_at(offset, order)
            if block is None:
                return
            kind, length, body, order = block
            if kind in (PCAPNG_SHB, PCAPNG_IDB):
                section = self._meta_block(offset, kind, body, order)
            elif kind in PCAPNG_PACKET_BLOCKS:
                if section is None:
                    raise CaptureError(self.path, offset, "packet block before any section header")
                yield self._packet(offset, kind, body, section), kind
            offset += length

    @property
    def meta_offsets(self) -> list[int]:
        """pcapng: offsets of the section header and interface blocks read so far."""
        return sorted({s[0] for s in self.sections} | self._seen_idbs)

    # ------------------------------------------------------------ pcapng blocks

    def _section_for(self, offset: int) -> tuple[int, str, list[Interface]]:
        found = None
        for section in self.sections:
            if section[0] <= offset:
                found = section
        if found is None:
            raise CaptureError(self.path, offset, "packet block before any section header")
        return found

    def _block_at(self, offset: int, order: str) -> tuple[int, int, bytes, str] | None:
        """(type, total length, body, byte order) of the block at ``offset``; None when the file ends in it.

        ``order`` is the byte order of the section the block is in; a section header sets its own.
        """
        head = self.read(offset, 12)
        if len(head) < 12:
            return None
        if head[:4] == PCAPNG_MAGIC:
            magic = head[8:12]
            if magic == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise CaptureError(self.path, offset, "pcapng section header with a bad byte-order magic")
        kind, length = struct.unpack(order + "II", head[:8])
        if length < 12 or length % 4 or length > MAX_BLOCK:
            raise CaptureError(self.path, offset, f"pcapng block length {length} is impossible")
        block = self.read(offset, length)
        if len(block) < length:
            return None  # a block cut short by the end of the file
        (trailer,) = struct.unpack_from(order + "I", block, length - 4)
        if trailer != length:
            raise CaptureError(self.path, offset, "pcapng block lengths disagree")
        return kind, length, block[8 : length - 4], order

    def _meta_block(
        self, offset: int, kind: int, body: bytes, order: str
    ) -> tuple[int, str, list[Interface]]:
        """Record a section header or interface description; return the current section."""
        if kind == PCAPNG_SHB:
            for section in self.sections:
                if section[0] == offset:
                    return section
            section = (offset, order, [])
            self.sections.append(section)
            self.sections.sort(key=lambda s: s[0])
            return section
        section = self._section_for(offset)
        if offset in self._seen_idbs:
            return section
        self._seen_idbs.add(offset)
        if len(body) < 8:
            raise CaptureError(self.path, offset, "pcapng interface block too short")
        linktype, _, snaplen = struct.unpack_from(section[1] + "HHI", body)
        units, shift = 1_000_000, 0
        for code, value in self._options(body[8:], section[1]):
            if code == 9 and value:
                units = _tsresol(value[0])
            elif code == 14 and len(value) == 8:
                (shift,) = struct.unpack(section[1] + "q", value)
        section[2].append(Interface(linktype, snaplen, units, shift))
        return section

    @staticmethod
    def _options(data: bytes, order: str) -> Iterator[tuple[int, bytes]]:
        i = 0
        while i + 4 <= len(data):
            code, length = struct.unpack_from(order + "HH", data, i)
            if code == 0:
                return
            yield code, data[i + 4 : i + 4 + length]
            i += 4 + length + (-length % 4)

    def _packet(self, offset: int, kind: int, body: bytes, section) -> Record:
        order, interfaces = section[1], section[2]
        if kind == PCAPNG_SPB:
            if len(body) < 4 or not interfaces:
                raise CaptureError(self.path, offset, "simple packet block without an interface")
            (orig_len,) = struct.unpack_from(order + "I", body)
            caplen = min(orig_len, len(body) - 4, interfaces[0].snaplen or MAX_CAPLEN)
            return Record(offset, self._last_ts, interfaces[0].linktype, body[4 : 4 + caplen], orig_len)
        if kind == PCAPNG_EPB:
            if len(body) < 20:
                raise CaptureError(self.path, offset, "enhanced packet block too short")
            if_id, high, low, caplen, orig_len = struct.unpack_from(order + "IIIII", body)
            start = 20
        else:
            if len(body) < 20:
                raise CaptureError(self.path, offset, "packet block too short")
            if_id, _, high, low, caplen, orig_len = struct.unpack_from(order + "HHIIII", body)
            start = 20
        if if_id >= len(interfaces):
            raise CaptureError(self.path, offset, f"packet of undeclared interface {if_id}")
        if start + caplen > len(body):
            raise CaptureError(self.path, offset, f"packet length {caplen} exceeds its block")
        iface = interfaces[if_id]
        ts = iface.ts_ns((high << 32) | low)
        if not 0 <= ts < MAX_TS_NS:
            raise CaptureError(self.path, offset, f"packet time {ts} ns is outside what a pcap can hold")
        self._last_ts = ts
        return Record(offset, ts, iface.linktype, body[start : start + caplen], orig_len)

    # ------------------------------------------------------------ random access

    def record_at(self, offset: int) -> Record | None:
        """The record starting at ``offset``; None when the file ends inside it."""
        if self.kind == "pcap":
            head = self.read(offset, RECORD_HEADER_SIZE)
            if len(head) < RECORD_HEADER_SIZE:
                return None
            secs, frac, caplen, orig_len = self._record.unpack(head)
            if caplen > MAX_CAPLEN:
                raise CaptureError(self.path, offset, f"record length {caplen} is impossible")
            data = self.read(offset + RECORD_HEADER_SIZE, caplen)
            if len(data) < caplen:
                return None
            return Record(offset, secs * 1_000_000_000 + frac * self._scale, self.linktype, data, orig_len)
        section = self._section_for(offset)
        block = self._block_at(offset, section[1])
        if block is None:
            return None
        kind, _, body, _ = block
        if kind not in (PCAPNG_EPB, PCAPNG_OPB):
            raise CaptureError(self.path, offset, "no timestamped packet block here")
        return self._packet(offset, kind, body, section)

    def records_at(self, offsets: Iterable[int]) -> Iterator[Record]:
        """The records at ascending ``offsets``, read through a window so near records share a read."""
        if self.kind != "pcap":
            for offset in offsets:
                record = self.record_at(offset)
                if record is None:
                    return
                yield record
            return
        unpack, scale, linktype = self._record.unpack_from, self._scale, self.linktype
        base, window = 0, b""
        for offset in offsets:
            i = offset - base
            if i < 0 or i + RECORD_HEADER_SIZE > len(window):
                base, window, i = offset, self.read(offset, READ_WINDOW), 0
                if len(window) < RECORD_HEADER_SIZE:
                    return  # cut short by the end of the file
            secs, frac, caplen, orig_len = unpack(window, i)
            if caplen > MAX_CAPLEN:
                raise CaptureError(self.path, offset, f"record length {caplen} is impossible")
            end = i + RECORD_HEADER_SIZE + caplen
            if end > len(window):
                base, window, i = offset, self.read(offset, max(READ_WINDOW, RECORD_HEADER_SIZE + caplen)), 0
                end = RECORD_HEADER_SIZE + caplen
                if end > len(window):
                    return
            yield Record(
                offset, secs * 1_000_000_000 + frac * scale, linktype, window[i + 16 : end], orig_len
            )

    def learn_blocks(self, offsets: Iterable[int]) -> None:
        """Read the section headers and interface blocks at ``offsets`` (from an index) before ``record_at``."""
        for offset in sorted(offsets):
            order = self._section_for(offset)[1]  # a section header reads its own byte order
            block = self._block_at(offset, order)
            if block is None or block[0] not in (PCAPNG_SHB, PCAPNG_IDB):
                raise CaptureError(self.path, offset, "expected a section header or interface block")
            self._meta_block(offset, block[0], block[2], block[3])


def open_capture(path: str | Path) -> Capture:
    """Open a capture file; use it as a context manager and iterate it for records."""
    return Capture(path)


# ---------------------------------------------------------------- writing


def pcap_file_header(linktype: int, nanosecond: bool, snaplen: int = MAX_CAPLEN) -> bytes:
    """A little-endian classic pcap file header."""
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    return PCAP_HEADER.pack(magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record_bytes(record: Record, nanosecond: bool) -> bytes:
    """One classic pcap record (header and data) for ``record``."""
    secs, frac = divmod(record.ts_ns, 1_000_000_000)
    if not nanosecond:
        frac //= 1000
    return PCAP_RECORD.pack(secs, frac, len(record.data), record.orig_len) + record.data


def _pcapng_block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


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
        parts = [_pcapng_block(PCAPNG_SHB, struct.pack("<IHHq", PCAPNG_BYTE_ORDER, 1, 0, -1))]
        resolution = b"\x09\x00\x01\x00\x09\x00\x00\x00" if self.nanosecond else b""  # if_tsresol = 9
        for linktype in self.linktypes:
            options = resolution + b"\0\0\0\0" if resolution else b""
            parts.append(_pcapng_block(PCAPNG_IDB, struct.pack("<HHI", linktype, 0, self.snaplen) + options))
        return b"".join(parts)

    def record(self, record: Record) -> bytes:
        if record.linktype not in self._interface:
            # only a pcapng source declaring an interface after its first packet can get here
            raise ValueError(f"link type {record.linktype} was not declared in the answer's header")
        if not self.pcapng:
            return pcap_record_bytes(record, self.nanosecond)
        ticks = record.ts_ns if self.nanosecond else record.ts_ns // 1000
        head = struct.pack(
            "<IIIII",
            self._interface[record.linktype],
            ticks >> 32,
            ticks & 0xFFFFFFFF,
            len(record.data),
            record.orig_len,
        )
        return _pcapng_block(PCAPNG_EPB, head + record.data)

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
