"""Merge pcap/pcapng record streams by timestamp, as their bytes arrive, in flat memory.

Each stream is read incrementally from an iterator of byte chunks (an HTTP body) by a
``engine.formats.stream.StreamReader``: the file header first, then the records of each chunk
as a ``Batch``. A ``Merger`` interleaves several readers by packet time, ties going to the stream listed
first, holding one batch (one chunk's records) per stream. Its answer is a classic
pcap when every stream has one link type and one precision (micro- or nanoseconds),
records passed through byte for byte; otherwise, or when asked, a pcapng with one
interface per stream interface, named after its stream, keeping each interface's own
timestamp resolution: no precision is ever converted, so none is lost.

With ``limits`` (``engine.query.answer.Limits``), the merged answer ends cleanly at a record boundary, in
time order: after the first ``packets`` records, before ``bytes`` bytes (its header included) are
exceeded, as one node's answer does.

Errors: a stream that is not a capture, or ends inside a record, raises ``StreamError``
(``read_header``, ``next_batch``); in ``Merger.stream`` that and any failure of a stream's
chunk iterator is raised as ``SourceFailed`` naming the stream.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterator, Sequence

from ..formats.capture import MAX_CAPLEN
from ..formats.pcap import RECORD_HEADER, RECORD_HEADER_SIZE
from ..formats.stream import NS, Batch, StreamReader
from ..formats.writer import enhanced_packet_block, interface_block, pcap_file_header, section_header_block
from ..query.answer import Limits

OUT_CHUNK = 1 << 16


class SourceFailed(Exception):
    """Reading stream ``index`` failed (its chunk iterator raised ``cause``)."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"stream {index} failed: {type(cause).__name__}")
        self.index = index
        self.cause = cause


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
        self._total = 0  # bytes of the answer so far (``stream``), for the byte limit

    @property
    def content_type(self) -> str:
        return "application/x-pcapng" if self.pcapng else "application/vnd.tcpdump.pcap"

    # ------------------------------------------------------------ header

    def header(self) -> bytes:
        if not self.pcapng:
            return pcap_file_header(self.linktype, self.nanosecond, self.snaplen)
        parts = [section_header_block()]
        for index, reader in enumerate(self.readers):
            for iface in range(len(reader.interfaces)):
                parts.append(self._declare(index, iface))
        return b"".join(parts)

    def _declare(self, index: int, iface: int) -> bytes:
        """The interface block for stream ``index``'s interface ``iface``, numbered in the answer."""
        info = self.readers[index].interfaces[iface]
        self._out_ifaces[(index, iface)] = len(self._out_ifaces)
        return interface_block(
            info.linktype,
            info.snaplen,
            name=self.names[index],
            units_per_s=info.units_per_s,
            offset_s=info.offset_s,
        )

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
        data = bytes(record[RECORD_HEADER_SIZE:])
        if not self.pcapng:
            return RECORD_HEADER.pack(secs, frac, caplen, orig_len) + data
        ticks = secs * reader.interfaces[0].units_per_s + frac
        return self._epb(index, 0, ticks, data, orig_len)

    def _from_pcapng(self, index: int, packet: tuple[int, int, bytes, int]) -> bytes:
        iface, ticks, data, orig_len = packet
        if not self.pcapng:
            units = self.readers[index].interfaces[iface].units_per_s
            secs, frac = divmod(ticks, units)
            return RECORD_HEADER.pack(secs, frac, len(data), orig_len) + data
        return self._epb(index, iface, ticks, data, orig_len)

    def _epb(self, index: int, iface: int, ticks: int, data: bytes, orig_len: int) -> bytes:
        declare = b""
        if (index, iface) not in self._out_ifaces:
            declare = self._declare(index, iface)  # an interface the stream declared after its start
        return declare + enhanced_packet_block(self._out_ifaces[(index, iface)], ticks, data, orig_len)

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
        max_packets = self.limits.packets
        self._total, count = len(header), 0  # what the answer holds so far, for the limits
        parts: list = []
        size = 0
        raw = [r.kind == "pcap" and r.order == "<" and not self.pcapng for r in self.readers]
        cursors, heap = self._first_batches()
        while heap:
            _, index = heapq.heappop(heap)
            batch, pos = cursors[index]
            stop = _run_end(batch.ts, pos, heap, index)
            if max_packets is not None:
                stop = min(stop, pos + max_packets - count)
            take = self._take_raw if raw[index] else self._take_encoded
            run, stop, full = take(index, batch, pos, stop, parts)
            size += run
            self._total, count = self._total + run, count + stop - pos
            if full or (max_packets is not None and count >= max_packets):
                break
            if size >= OUT_CHUNK:
                yield b"".join(parts)
                parts, size = [], 0
            if stop == len(batch.ts):
                next_batch = self._next(index)
                if next_batch is None:
                    del cursors[index]
                    continue
                batch, stop = next_batch, 0
            cursors[index] = (batch, stop)
            heapq.heappush(heap, (batch.ts[stop], index))
        if parts:
            yield b"".join(parts)

    def _first_batches(self) -> tuple[dict[int, tuple[Batch, int]], list[tuple[int, int]]]:
        """Each stream's first batch at its first record, and the heap of their first times."""
        cursors: dict[int, tuple[Batch, int]] = {}
        heap: list[tuple[int, int]] = []
        for index in range(len(self.readers)):
            batch = self._next(index)
            if batch is not None:
                cursors[index] = (batch, 0)
                heap.append((batch.ts[0], index))
        heapq.heapify(heap)
        return cursors, heap

    def _take_raw(self, index: int, batch: Batch, pos: int, stop: int, parts: list) -> tuple[int, int, bool]:
        """Records ``pos:stop`` copied as they are, one slice, up to the byte limit: (bytes, stop, full)."""
        offsets, full = batch.offsets, False
        if self.limits.bytes is not None:
            room = self.limits.bytes - self._total
            fits = max(pos, bisect_right(offsets, offsets[pos] + room, pos, stop + 1) - 1)
            full, stop = fits < stop, fits
        run = offsets[stop] - offsets[pos]
        if run:
            parts.append(batch.data[offsets[pos] : offsets[stop]])
        return run, stop, full

    def _take_encoded(
        self, index: int, batch: Batch, pos: int, stop: int, parts: list
    ) -> tuple[int, int, bool]:
        """Records ``pos:stop`` in the answer's format, up to the byte limit: (bytes, stop, full)."""
        encoded, full = self._encode(index, batch, pos, stop), False
        if self.limits.bytes is not None:
            kept, room = 0, self.limits.bytes - self._total
            for part in encoded:  # one record each
                if len(part) > room:
                    break
                room -= len(part)
                kept += 1
            full, encoded, stop = kept < len(encoded), encoded[:kept], pos + kept
        parts.extend(encoded)
        return sum(len(part) for part in encoded), stop, full


def _run_end(times: list[int], pos: int, heap: list[tuple[int, int]], index: int) -> int:
    """Where stream ``index``'s run from ``pos`` ends: before the next stream's head (ties: the stream listed first)."""
    if not heap:
        return len(times)
    limit, other = heap[0]
    stop = pos + 1
    if index < other:
        while stop < len(times) and times[stop] <= limit:
            stop += 1
    else:
        while stop < len(times) and times[stop] < limit:
            stop += 1
    return stop
