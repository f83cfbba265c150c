"""Merge pcap/pcapng record streams by timestamp, as their bytes arrive, in flat memory.

A ``StreamReader`` reads one stream incrementally from an iterator of byte chunks (an
HTTP body): the file header first, then the records of each chunk as a ``Batch``. A
``Merger`` interleaves several readers by packet time, ties going to the stream listed
first, holding one batch (one chunk's records) per stream. Its answer is a classic
pcap when every stream has one link type and one precision (micro- or nanoseconds),
records passed through byte for byte; otherwise, or when asked, a pcapng with one
interface per stream interface, named after its stream, keeping each interface's own
timestamp resolution: no precision is ever converted, so none is lost.

With ``limits`` (``engine.answer.Limits``), the merged answer ends cleanly at a record boundary, in
time order: after the first ``packets`` records, before ``bytes`` bytes (its header included) are
exceeded, as one node's answer does.

Errors: a stream that is not a capture, or ends inside a record, raises ``StreamError``
(``read_header``, ``next_batch``); in ``Merger.stream`` that and any failure of a stream's
chunk iterator is raised as ``SourceFailed`` naming the stream.
"""

from __future__ import annotations

import heapq
import struct
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from engine.answer import Limits
from engine.formats import pcap, pcapng
from engine.formats.capture import MAX_CAPLEN
from engine.formats.pcapng import BYTE_ORDERS, MAX_BLOCK, OPTION_TSOFFSET, OPTION_TSRESOL, options
from engine.formats.writer import pcapng_block

NS = 1_000_000_000
US = 1_000_000
OUT_CHUNK = 1 << 16
RECORD_HEADER = 16
_LE_RECORD = pcap.RECORD_HEADER
OPTION_NAME = 2  # if_name


class StreamError(ValueError):
    """A stream that cannot be read as a capture; the message says where."""


class SourceFailed(Exception):
    """Reading stream ``index`` failed (its chunk iterator raised ``cause``)."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"stream {index} failed: {type(cause).__name__}")
        self.index = index
        self.cause = cause


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


_tsresol = pcapng._tsresol


def _tsresol_code(units: int) -> int:
    """The if_tsresol byte for ``units`` per second (a power of ten or of two)."""
    exponent = len(str(units)) - 1
    if 10**exponent == units:
        return exponent
    return 0x80 | (units.bit_length() - 1)


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
        while pos + RECORD_HEADER <= size:
            secs, frac, caplen, _ = unpack(buf, pos)
            if caplen > MAX_CAPLEN:
                raise StreamError(f"{self.name}: record length {caplen} is impossible")
            end = pos + RECORD_HEADER + caplen
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
        if len(body) < 8:
            raise StreamError(f"{self.name}: pcapng interface block too short")
        linktype, _, snaplen = struct.unpack_from(order + pcapng.IDB_FIELDS, body)
        units, shift = US, 0
        for code, value in options(body[8:], order):
            if code == OPTION_TSRESOL and value:
                units = _tsresol(value[0])
            elif code == OPTION_TSOFFSET and len(value) == 8:
                (shift,) = struct.unpack(order + "q", value)
        self.interfaces.append(StreamInterface(linktype, snaplen, units, shift))

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


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


class Merger:
    """Several opened readers (headers read) merged into one capture stream, as chunks of bytes."""

    def __init__(
        self,
        readers: Sequence[StreamReader],
        names: Sequence[str],
        *,
        pcapng: bool = False,
        limits: Limits | None = None,
    ) -> None:
        self.readers = list(readers)
        self.names = list(names)
        self.limits = limits or Limits()
        kinds = {(i.linktype, i.classic_precision) for r in readers for i in r.interfaces}
        classic = len(kinds) == 1 and None not in {p for _, p in kinds}
        self.pcapng = pcapng or not classic
        self.snaplen = max((i.snaplen for r in readers for i in r.interfaces), default=0) or MAX_CAPLEN
        if not self.pcapng:
            self.linktype, precision = kinds.pop()
            self.nanosecond = precision == NS
        # pcapng: output interface of (stream, stream interface), declared as they come
        self._out_ifaces: dict[tuple[int, int], int] = {}

    @property
    def content_type(self) -> str:
        return "application/x-pcapng" if self.pcapng else "application/vnd.tcpdump.pcap"

    # ------------------------------------------------------------ header

    def header(self) -> bytes:
        if not self.pcapng:
            magic = 0xA1B23C4D if self.nanosecond else 0xA1B2C3D4
            return pcap.FILE_HEADER.pack(magic, 2, 4, 0, 0, self.snaplen, self.linktype)
        shb = struct.pack("<" + pcapng.SHB_FIELDS, pcapng.BYTE_ORDER_MAGIC, 1, 0, -1)
        parts = [pcapng_block(pcapng.SHB, shb)]
        for index, reader in enumerate(self.readers):
            for iface in range(len(reader.interfaces)):
                parts.append(self._declare(index, iface))
        return b"".join(parts)

    def _declare(self, index: int, iface: int) -> bytes:
        """The interface block for stream ``index``'s interface ``iface``, numbered in the answer."""
        info = self.readers[index].interfaces[iface]
        self._out_ifaces[(index, iface)] = len(self._out_ifaces)
        extra = _option(OPTION_NAME, self.names[index].encode("utf-8", "replace"))
        if info.units_per_s != US:
            extra += _option(OPTION_TSRESOL, bytes([_tsresol_code(info.units_per_s)]))
        if info.offset_s:
            extra += _option(OPTION_TSOFFSET, struct.pack("<q", info.offset_s))
        extra += b"\0\0\0\0"  # end of options
        head = struct.pack("<" + pcapng.IDB_FIELDS, info.linktype, 0, info.snaplen)
        return pcapng_block(pcapng.IDB, head + extra)

    # ------------------------------------------------------------ records

    def _encode(self, index: int, batch: Batch, start: int, stop: int) -> list:
        """Records ``start:stop`` of ``batch`` of stream ``index`` in the answer's format."""
        reader = self.readers[index]
        if reader.kind == "pcap":
            if not self.pcapng and reader.order == "<":
                return [batch.data[batch.offsets[start] : batch.offsets[stop]]]  # byte for byte
            return [self._from_pcap(index, reader, batch, i) for i in range(start, stop)]
        return [self._from_pcapng(index, packet) for packet in batch.packets[start:stop]]

    def _from_pcap(self, index: int, reader: StreamReader, batch: Batch, i: int) -> bytes:
        record = batch.data[batch.offsets[i] : batch.offsets[i + 1]]
        secs, frac, caplen, orig_len = reader._record.unpack_from(record)
        data = bytes(record[RECORD_HEADER:])
        if not self.pcapng:
            return _LE_RECORD.pack(secs, frac, caplen, orig_len) + data
        ticks = secs * reader.interfaces[0].units_per_s + frac
        return self._epb(index, 0, ticks, data, orig_len)

    def _from_pcapng(self, index: int, packet: tuple[int, int, bytes, int]) -> bytes:
        iface, ticks, data, orig_len = packet
        if not self.pcapng:
            units = self.readers[index].interfaces[iface].units_per_s
            secs, frac = divmod(ticks, units)
            return _LE_RECORD.pack(secs, frac, len(data), orig_len) + data
        return self._epb(index, iface, ticks, data, orig_len)

    def _epb(self, index: int, iface: int, ticks: int, data: bytes, orig_len: int) -> bytes:
        declare = b""
        if (index, iface) not in self._out_ifaces:
            declare = self._declare(index, iface)  # an interface the stream declared after its start
        out = self._out_ifaces[(index, iface)]
        head = struct.pack("<" + pcapng.EPB_FIELDS, out, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig_len)
        return declare + pcapng_block(pcapng.EPB, head + data)

    def _next(self, index: int) -> Batch | None:
        try:
            return self.readers[index].next_batch()
        except Exception as exc:
            raise SourceFailed(index, exc) from exc

    def stream(self) -> Iterator[bytes]:
        """The header, then every record of every stream in time order in chunks of about 64 KiB.

        With limits, the records end before the first that would pass one of them.
        """
        # The header goes out at once: a server sends its response head with the first chunk, and a
        # stream failing later can then only cut the answer, never turn it into an error page.
        header = self.header()
        yield header
        max_packets, max_bytes = self.limits.packets, self.limits.bytes
        total, count = len(header), 0  # what the answer holds so far, for the limits
        parts: list = []
        size = 0
        raw = [r.kind == "pcap" and r.order == "<" and not self.pcapng for r in self.readers]
        cursors: dict[int, tuple[Batch, int]] = {}
        heap: list[tuple[int, int]] = []
        for index in range(len(self.readers)):
            batch = self._next(index)
            if batch is not None:
                cursors[index] = (batch, 0)
                heap.append((batch.ts[0], index))
        heapq.heapify(heap)
        while heap:
            _, index = heapq.heappop(heap)
            batch, pos = cursors[index]
            times, stop = batch.ts, len(batch.ts)
            if heap:
                # take this stream's records up to the next stream's head (ties: the stream listed first)
                limit, other = heap[0]
                stop = pos + 1
                if index < other:
                    while stop < len(times) and times[stop] <= limit:
                        stop += 1
                else:
                    while stop < len(times) and times[stop] < limit:
                        stop += 1
            if max_packets is not None:
                stop = min(stop, pos + max_packets - count)
            full = False  # a limit is reached: nothing more goes out
            if raw[index]:  # records copied as they are: one slice for the whole run
                offsets = batch.offsets
                if max_bytes is not None:
                    fits = max(
                        pos, bisect_right(offsets, offsets[pos] + max_bytes - total, pos, stop + 1) - 1
                    )
                    full, stop = fits < stop, fits
                run = offsets[stop] - offsets[pos]
                if run:
                    parts.append(batch.data[offsets[pos] : offsets[stop]])
                size += run
            else:
                encoded = self._encode(index, batch, pos, stop)
                if max_bytes is not None:
                    kept, room = 0, max_bytes - total
                    for part in encoded:  # one record each
                        if len(part) > room:
                            break
                        room -= len(part)
                        kept += 1
                    full, encoded, stop = kept < len(encoded), encoded[:kept], pos + kept
                parts.extend(encoded)
                run = sum(len(part) for part in encoded)
                size += run
            total, count = total + run, count + stop - pos
            if full or (max_packets is not None and count >= max_packets):
                break
            if size >= OUT_CHUNK:
                yield b"".join(parts)
                parts, size = [], 0
            if stop == len(times):
                next_batch = self._next(index)
                if next_batch is None:
                    del cursors[index]
                    continue
                batch, stop = next_batch, 0
            cursors[index] = (batch, stop)
            heapq.heappush(heap, (batch.ts[stop], index))
        if parts:
            yield b"".join(parts)
