"""Reading pcapng files: sections in either byte order, interfaces with their time resolution.

Blocks are read one at a time; their layouts are declared once below. A pcapng Simple Packet Block
has no timestamp: it takes the timestamp of the packet before it in the file (0 when none).
Blocks of other types (name resolution, statistics, custom) are skipped, also before the first
interface block.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .capture import MAX_CAPLEN, Capture, CaptureError, IncompleteHeader, Record, check_time

SHB = 0x0A0D0D0A  # section header
IDB = 1  # interface description
OPB = 2  # obsolete packet block
SPB = 3  # simple packet block
EPB = 6  # enhanced packet block
PACKET_BLOCKS = (EPB, SPB, OPB)
MAGIC = b"\x0a\x0d\x0d\x0a"
BYTE_ORDER_MAGIC = 0x1A2B3C4D
BYTE_ORDERS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
MAX_BLOCK = 16 << 20  # a block longer than this is damage, not a packet
# Option codes, one name each (an interface's options; code 0 ends a block's options).
OPTION_END = 0  # opt_endofopt
OPTION_NAME = 2  # if_name
OPTION_TSRESOL = 9  # if_tsresol
OPTION_TSOFFSET = 14  # if_tsoffset

# Block layouts (after the 8-byte type and length), without byte order: a section sets its own.
BLOCK_HEAD_FIELDS = "II"  # block type, total length
SHB_FIELDS = "IHHq"  # byte-order magic, major, minor, section length
IDB_FIELDS = "HHI"  # link type, reserved, snaplen
EPB_FIELDS = "IIIII"  # interface, timestamp high, low, captured length, original length
OPB_FIELDS = "HHIIII"  # interface, drops, timestamp high, low, captured length, original length
SPB_FIELDS = "I"  # original length
OPTION_FIELDS = "HH"  # option code, length
BODY_START = {EPB: struct.calcsize("<" + EPB_FIELDS), OPB: struct.calcsize("<" + OPB_FIELDS), SPB: 4}


class Interface(NamedTuple):
    """A pcapng interface: its link type and how to turn its timestamps into nanoseconds."""

    linktype: int
    snaplen: int
    units_per_s: int  # timestamp units per second (if_tsresol)
    offset_s: int  # if_tsoffset, seconds added to every timestamp

    def ts_ns(self, ticks: int) -> int:
        return (self.offset_s * 1_000_000_000) + ticks * 1_000_000_000 // self.units_per_s


class Section(NamedTuple):
    """A section: where its header is, its byte order, and the interfaces it declared so far."""

    offset: int
    order: str
    interfaces: list[Interface]


class Block(NamedTuple):
    kind: int
    length: int
    body: bytes  # between the type/length head and the trailing length
    order: str  # the byte order of its section


def tsresol_units(value: int) -> int:
    """Timestamp units per second of an if_tsresol byte (0x80 | n: 2**n, else 10**n)."""
    return 1 << (value & 0x7F) if value & 0x80 else 10 ** (value & 0x7F)


def tsresol_code(units: int) -> int:
    """The if_tsresol byte for ``units`` per second (a power of ten or of two)."""
    exponent = len(str(units)) - 1
    if 10**exponent == units:
        return exponent
    return 0x80 | (units.bit_length() - 1)


def options(data: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    """(code, value) of the options in ``data`` up to the end-of-options option."""
    i = 0
    while i + 4 <= len(data):
        code, length = struct.unpack_from(order + OPTION_FIELDS, data, i)
        if code == OPTION_END:
            return
        yield code, data[i + 4 : i + 4 + length]
        i += 4 + length + (-length % 4)


def interface_fields(body: bytes, order: str) -> tuple[int, int, int, int] | None:
    """An interface block's (link type, snap length, timestamp units per second, offset in
    seconds) from its body; None when the body is too short to be one."""
    if len(body) < 8:
        return None
    linktype, _, snaplen = struct.unpack_from(order + IDB_FIELDS, body)
    units, shift = 1_000_000, 0
    for code, value in options(body[8:], order):
        if code == OPTION_TSRESOL and value:
            units = tsresol_units(value[0])
        elif code == OPTION_TSOFFSET and len(value) == 8:
            (shift,) = struct.unpack(order + "q", value)
    return linktype, snaplen, units, shift


class PcapngCapture(Capture):
    """A pcapng file: sections of interfaces and packet blocks."""

    kind = "pcapng"

    def _open(self) -> None:
        """Read the section header and the interfaces declared before the first packet."""
        self._seen_idbs: set[int] = set()
        self.sections: list[Section] = []
        self._last_ts = 0
        self.read_to = 0
        offset, order = 0, "<"
        while True:
            block = self.block_at(offset, order)
            if block is None:
                if offset == 0:
                    raise IncompleteHeader(self.path, 0, "no complete pcapng section header yet")
                break
            if block.kind in PACKET_BLOCKS:
                break
            if block.kind in (SHB, IDB):
                self._meta_block(offset, block)
            order = block.order
            offset += block.length
        interfaces = self.sections[0].interfaces
        self.linktype = interfaces[0].linktype if interfaces else 1
        self.snaplen = max((i.snaplen for i in interfaces), default=0) or MAX_CAPLEN

    def _interfaces(self) -> list[Interface]:
        return [i for section in self.sections for i in section.interfaces]

    @property
    def linktypes(self) -> list[int]:
        return sorted({i.linktype for i in self._interfaces()})

    @property
    def nanosecond(self) -> bool:
        return any(i.units_per_s > 1_000_000 for i in self._interfaces())

    @property
    def meta_offsets(self) -> list[int]:
        return sorted({s.offset for s in self.sections} | self._seen_idbs)

    def __iter__(self) -> Iterator[Record]:
        for record, _ in self.packet_blocks():
            yield record

    def packet_blocks(self) -> Iterator[tuple[Record, int]]:
        """(record, block type) of every packet block, in file order."""
        offset, order = 0, "<"
        section: Section | None = None
        while True:
            self.read_to = offset  # where the blocks read so far end
            block = self.block_at(offset, order)
            if block is None:
                return
            if block.kind in (SHB, IDB):
                section = self._meta_block(offset, block)
            elif block.kind in PACKET_BLOCKS:
                if section is None:
                    raise CaptureError(self.path, offset, "packet block before any section header")
                yield self._packet(offset, block, section), block.kind
            order = block.order
            offset += block.length

    def section_for(self, offset: int) -> Section:
        """The section the block at ``offset`` belongs to (of those read so far)."""
        found = None
        for section in self.sections:
            if section.offset <= offset:
                found = section
        if found is None:
            raise CaptureError(self.path, offset, "packet block before any section header")
        return found

    def block_at(self, offset: int, order: str) -> Block | None:
        """The block at ``offset`` in a section of byte order ``order``; None when the file ends in it.

        A section header sets its own byte order.
        """
        head = self.read(offset, 12)
        if len(head) < 12:
            return None
        if head[:4] == MAGIC:
            found = BYTE_ORDERS.get(head[8:12])
            if found is None:
                raise CaptureError(self.path, offset, "pcapng section header with a bad byte-order magic")
            order = found
        kind, length = struct.unpack(order + BLOCK_HEAD_FIELDS, head[:8])
        if length < 12 or length % 4 or length > MAX_BLOCK:
            raise CaptureError(self.path, offset, f"pcapng block length {length} is impossible")
        data = self.read(offset, length)
        if len(data) < length:
            return None  # a block cut short by the end of the file
        (trailer,) = struct.unpack_from(order + "I", data, length - 4)
        if trailer != length:
            raise CaptureError(self.path, offset, "pcapng block lengths disagree")
        return Block(kind, length, data[8 : length - 4], order)

    def _meta_block(self, offset: int, block: Block) -> Section:
        """Record a section header or interface description; return the current section."""
        if block.kind == SHB:
            for section in self.sections:
                if section.offset == offset:
                    return section
            section = Section(offset, block.order, [])
            self.sections.append(section)
            self.sections.sort(key=lambda s: s.offset)
            return section
        section = self.section_for(offset)
        if offset in self._seen_idbs:
            return section
        self._seen_idbs.add(offset)
        fields = interface_fields(block.body, section.order)
        if fields is None:
            raise CaptureError(self.path, offset, "pcapng interface block too short")
        section.interfaces.append(Interface(*fields))
        return section

    def _packet(self, offset: int, block: Block, section: Section) -> Record:
        order, interfaces, body = section.order, section.interfaces, block.body
        if block.kind == SPB:
            if len(body) < 4 or not interfaces:
                raise CaptureError(self.path, offset, "simple packet block without an interface")
            (orig_len,) = struct.unpack_from(order + SPB_FIELDS, body)
            caplen = min(orig_len, len(body) - 4, interfaces[0].snaplen or MAX_CAPLEN)
            return Record(offset, self._last_ts, interfaces[0].linktype, body[4 : 4 + caplen], orig_len)
        start = BODY_START[block.kind]
        if len(body) < start:
            what = "enhanced packet block" if block.kind == EPB else "packet block"
            raise CaptureError(self.path, offset, f"{what} too short")
        if block.kind == EPB:
            if_id, high, low, caplen, orig_len = struct.unpack_from(order + EPB_FIELDS, body)
        else:
            if_id, _, high, low, caplen, orig_len = struct.unpack_from(order + OPB_FIELDS, body)
        if if_id >= len(interfaces):
            raise CaptureError(self.path, offset, f"packet of undeclared interface {if_id}")
        if start + caplen > len(body):
            raise CaptureError(self.path, offset, f"packet length {caplen} exceeds its block")
        iface = interfaces[if_id]
        ts = iface.ts_ns((high << 32) | low)
        check_time(self.path, offset, ts)
        self._last_ts = ts
        return Record(offset, ts, iface.linktype, body[start : start + caplen], orig_len)

    def record_at(self, offset: int) -> Record | None:
        section = self.section_for(offset)
        block = self.block_at(offset, section.order)
        if block is None:
            return None
        if block.kind not in (EPB, OPB):
            raise CaptureError(self.path, offset, "no timestamped packet block here")
        return self._packet(offset, block, section)

    def learn_interfaces(self, step: int = 1 << 20) -> None:
        """Read every section header and interface block of the file as opened, walking the block heads.

        An interface may be declared after the first packet (a capture tool adding one, a section
        appended): an answer written before the scan meets it must know its precision and link type.
        Stops at anything that is not a block: damage is the scan's to find and report.
        """
        offset, end = self.read_to, self.opened_size
        order = self.section_for(offset).order if self.sections else "<"
        buf, buf_at = b"", 0
        try:
            while offset + 12 <= end:
                if offset + 12 > buf_at + len(buf):
                    buf, buf_at = self.read(offset, min(step, end - offset)), offset
                head = buf[offset - buf_at : offset - buf_at + 12]
                if head[:4] == MAGIC:
                    found = BYTE_ORDERS.get(head[8:12])
                    if found is None:
                        return
                    order = found
                kind, length = struct.unpack(order + BLOCK_HEAD_FIELDS, head[:8])
                if length < 12 or length % 4 or length > MAX_BLOCK:
                    return
                if kind in (SHB, IDB):
                    block = self.block_at(offset, order)
                    if block is None:
                        return
                    self._meta_block(offset, block)
                offset += length
        except CaptureError:
            return

    def learn_blocks(self, offsets: Iterable[int]) -> None:
        """Read the section headers and interface blocks at ``offsets`` (from an index) before ``record_at``."""
        for offset in sorted(offsets):
            order = self.section_for(offset).order  # a section header reads its own byte order
            block = self.block_at(offset, order)
            if block is None or block.kind not in (SHB, IDB):
                raise CaptureError(self.path, offset, "expected a section header or interface block")
            self._meta_block(offset, block)
