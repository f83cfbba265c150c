"""A pcap or pcapng stream read incrementally, fed chunk by chunk (an HTTP body), in flat memory.

``StreamReader`` reads the file header first (``read_header``), then the records each chunk
completes as a ``Batch`` (``next_batch``): classic pcap records as byte spans of the chunk (copied
through unchanged when nothing needs rewriting), pcapng packets decoded with their interface and
ticks, each interface's own time resolution and offset kept. A stream that is not a capture, or
ends inside a record, raises ``StreamError``. The merge (``engine.merge``) reads its streams so.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import pcap, pcapng
from .capture import MAX_CAPLEN
from .pcapng import BYTE_ORDERS, MAX_BLOCK

NS = 1_000_000_000
US = 1_000_000
RECORD_HEADER_SIZE = pcap.RECORD_HEADER_SIZE


class StreamError(ValueError):
    """A stream that cannot be read as a capture; the message says where."""


@dataclass(frozen=True)
class StreamInterface:
    """An interface of a stream: its link type, snap length and timestamp units (per second, offset)."""

    linktype: int
    snaplen: int
    units_per_s: int = US
    offset_s: int = 0

    @property
    def classic_precision(self) -> int | None:
        """US or NS when a classic pcap can hold this interface's times exactly; else None."""
        return self.units_per_s if self.units_per_s in (US, NS) and self.offset_s == 0 else None


@dataclass
class Batch:
    """The records one chunk completed: times (ns), and either byte spans or decoded packets.

    Classic pcap: record ``i`` is ``data[offsets[i]:offsets[i + 1]]`` (header and bytes).
    pcapng: ``packets[i]`` is (interface, ticks, captured bytes, original length).
    """

    ts: list[int]
    data: memoryview
    offsets: list[int] = field(default_factory=list)
    packets: list[tuple[int, int, bytes, int]] = field(default_factory=list)


class StreamReader:
    """One capture stream read from chunks of bytes: ``read_header()``, then ``next_batch()`` until None."""

    def __init__(self, chunks: Iterator[bytes], name: str = "stream") -> None:
        self._chunks = chunks
        self.name = name
        self._buf = b""
        self._pos = 0
        self._ended = False
        self.kind = ""
        self.interfaces: list[StreamInterface] = []
        self._section_base = 0  # pcapng: index in ``interfaces`` of the current section's interface 0
        self._last_ts = 0

    # ------------------------------------------------------------ bytes

    def _more(self) -> bool:
        """Append the next chunk to the unread bytes; False at the end of the stream."""
        if self._ended:
            return False
        try:
            chunk = next(self._chunks, None)
        except Exception:
            self._ended = True
            raise
        if chunk is None:
            self._ended = True
            return False
        self._buf = self._buf[self._pos :] + chunk if self._pos < len(self._buf) else bytes(chunk)
        self._pos = 0
        return True

    def _need(self, size: int) -> bool:
        while len(self._buf) - self._pos < size:
            if not self._more():
                return False
        return True

    # ------------------------------------------------------------ header

    def read_header(self) -> None:
        """Read the file header (pcapng: the section header and interfaces before the first packet)."""
        if not self._need(4):
            raise StreamError(f"{self.name}: ended before its file header")
        magic = self._buf[self._pos : self._pos + 4]
        if magic in pcap.MAGICS:
            if not self._need(pcap.FILE_HEADER_SIZE):
                raise StreamError(f"{self.name}: ended inside its file header")
            self.kind = "pcap"
            self.order, nanosecond = pcap.MAGICS[magic]
            fields = struct.unpack_from(self.order + pcap.FILE_HEADER_FIELDS, self._buf, self._pos)
            head = pcap.FileHeader._make(fields)
            self.interfaces = [
                StreamInterface(head.linktype & 0xFFFF, head.snaplen, NS if nanosecond else US)
            ]
            self._record = struct.Struct(self.order + pcap.RECORD_HEADER_FIELDS)
            self._scale = 1 if nanosecond else 1000
            self._pos += pcap.FILE_HEADER_SIZE
        elif magic == pcapng.MAGIC:
            self.kind = "pcapng"
            self.order = "<"
            while self._need(12):
                kind = struct.unpack_from(self.order + "I", self._buf, self._pos)[0]
                if kind in pcapng.PACKET_BLOCKS or self._block(meta_only=True) is None:
                    break
        else:
            raise StreamError(f"{self.name}: not a pcap or pcapng stream (magic {bytes(magic).hex()})")

    @property
    def linktypes(self) -> list[int]:
        return sorted({i.linktype for i in self.interfaces})

    # ------------------------------------------------------------ records

    def next_batch(self) -> Batch | None:
        """The records of the bytes read so far and one more chunk; None at the clean end of the stream."""
        while True:
            batch = self._pcap_batch() if self.kind == "pcap" else self._pcapng_batch()
            if batch.ts:
                return batch
            if not self._more():
                if self._pos < len(self._buf):
                    raise StreamError(f"{self.name}: ended inside a record")
                return None

    def _pcap_batch(self) -> Batch:
        buf, pos, size = self._buf, self._pos, len(self._buf)
        unpack, scale = self._record.unpack_from, self._scale
        ts: list[int] = []
        offsets: list[int] = []
        start = pos
        while pos + RECORD_HEADER_SIZE <= size:
            secs, frac, caplen, _ = unpack(buf, pos)
            if caplen > MAX_CAPLEN:
                raise StreamError(f"{self.name}: record length {caplen} is impossible")
            end = pos + RECORD_HEADER_SIZE + caplen
            if end > size:
                break
            ts.append(secs * NS + frac * scale)
            offsets.append(pos - start)
            pos = end
        offsets.append(pos - start)
        view = memoryview(buf)[start:pos]
        self._pos = pos
        return Batch(ts, view, offsets)

    def _pcapng_batch(self) -> Batch:
        ts: list[int] = []
        packets: list[tuple[int, int, bytes, int]] = []
        while True:
            packet = self._block(meta_only=False)
            if packet is None:
                break
            if packet is not True:
                ts.append(packet[0])
                packets.append(packet[1])
        return Batch(ts, memoryview(b""), packets=packets)

    def _block(self, *, meta_only: bool):
        """Consume one whole pcapng block: a packet's (ts, packet), True for another block, None if incomplete."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 12:
            return None
        if buf[pos : pos + 4] == pcapng.MAGIC:
            order = BYTE_ORDERS.get(bytes(buf[pos + 8 : pos + 12]))
            if order is None:
                raise StreamError(f"{self.name}: pcapng section header with a bad byte-order magic")
            self.order = order
        order = self.order
        kind, length = struct.unpack_from(order + pcapng.BLOCK_HEAD_FIELDS, buf, pos)
        if length < 12 or length % 4 or length > MAX_BLOCK:
            raise StreamError(f"{self.name}: pcapng block length {length} is impossible")
        if len(buf) - pos < length:
            if meta_only and not self._need(length):
                raise StreamError(f"{self.name}: ended inside a pcapng block")
            if meta_only:
                return self._block(meta_only=True)
            return None
        body = buf[pos + 8 : pos + length - 4]
        self._pos = pos + length
        if kind == pcapng.SHB:
            self._section_base = len(self.interfaces)
            return True
        if kind == pcapng.IDB:
            self._interface(body, order)
            return True
        if kind not in pcapng.PACKET_BLOCKS:
            return True
        return self._packet(kind, body, order)

    def _interface(self, body: bytes, order: str) -> None:
        fields = pcapng.interface_fields(body, order)
        if fields is None:
            raise StreamError(f"{self.name}: pcapng interface block too short")
        self.interfaces.append(StreamInterface(*fields))

    def _packet(self, kind: int, body: bytes, order: str) -> tuple[int, tuple[int, int, bytes, int]]:
        count = len(self.interfaces) - self._section_base
        if kind == pcapng.SPB:
            if len(body) < 4 or count < 1:
                raise StreamError(f"{self.name}: simple packet block without an interface")
            (orig_len,) = struct.unpack_from(order + pcapng.SPB_FIELDS, body)
            iface = self._section_base
            snaplen = self.interfaces[iface].snaplen or MAX_CAPLEN
            data = body[4 : 4 + min(orig_len, len(body) - 4, snaplen)]
            units = self.interfaces[iface].units_per_s
            ticks = (self._last_ts - self.interfaces[iface].offset_s * NS) * units // NS
            return self._last_ts, (iface, ticks, data, orig_len)
        if len(body) < 20:
            raise StreamError(f"{self.name}: packet block too short")
        if kind == pcapng.EPB:
            if_id, high, low, caplen, orig_len = struct.unpack_from(order + pcapng.EPB_FIELDS, body)
        else:
            if_id, _, high, low, caplen, orig_len = struct.unpack_from(order + pcapng.OPB_FIELDS, body)
        if if_id >= count:
            raise StreamError(f"{self.name}: packet of undeclared interface {if_id}")
        if 20 + caplen > len(body):
            raise StreamError(f"{self.name}: packet length {caplen} exceeds its block")
        iface = self._section_base + if_id
        info = self.interfaces[iface]
        ticks = (high << 32) | low
        ts = info.offset_s * NS + ticks * NS // info.units_per_s
        self._last_ts = ts
        return ts, (iface, ticks, body[20 : 20 + caplen], orig_len)
