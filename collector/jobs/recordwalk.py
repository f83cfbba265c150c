"""Whole records counted as a capture's bytes go by: the export's check that its file ends on one.

Only the record (pcap) or block (pcapng) headers are read, where they lie in each chunk, so the
check costs little more than the walk over a million headers a gigabyte; a header cut by a chunk's
end is the only thing kept between two chunks.
"""

from __future__ import annotations

import struct

from engine.formats import MAX_CAPLEN, pcap, pcapng
from engine.formats.stream import StreamError

PCAP_HEADER = pcap.FILE_HEADER_SIZE
PCAP_RECORD = pcap.RECORD_HEADER_SIZE
BLOCK_HEAD = 12  # a pcapng block's type and length, and the section header's byte-order magic


class RecordWalk:
    """Fed a capture's bytes in order: ``packets`` counted; ``whole()`` once it ended on a boundary."""

    def __init__(self) -> None:
        self.packets = 0
        self.kind = ""
        self.order = "<"
        self._start = b""  # the file's first bytes, until its kind is known
        self._tail = b""  # a header cut by the end of the last chunk
        self._skip = 0  # bytes of the current record still to come

    def feed(self, chunk: bytes) -> None:
        pos = 0
        if not self.kind:
            self._start += chunk
            if len(self._start) < PCAP_HEADER:
                return
            data, self._start = self._start, b""
            magic = data[:4]
            if magic in pcap.MAGICS:
                self.kind, self.order, pos = "pcap", pcap.MAGICS[magic][0], PCAP_HEADER
            elif magic == pcapng.MAGIC:
                self.kind = "pcapng"
            else:
                raise StreamError(f"not a pcap or pcapng stream (magic {magic.hex()})")
        elif self._tail:
            data, self._tail = self._tail + chunk, b""
        else:
            data = chunk
        size = len(data)
        if self._skip:
            taken = min(self._skip, size)
            self._skip -= taken
            pos += taken
        pos = self._pcap(data, pos, size) if self.kind == "pcap" else self._pcapng(data, pos, size)
        if pos > size:
            self._skip = pos - size
        elif pos < size:
            self._tail = bytes(data[pos:])

    def _pcap(self, data: bytes, pos: int, size: int) -> int:
        caplen_at = struct.Struct(self.order + "I").unpack_from
        packets = 0
        while pos + PCAP_RECORD <= size:
            (caplen,) = caplen_at(data, pos + 8)
            if caplen > MAX_CAPLEN:
                raise StreamError(f"record length {caplen} is impossible")
            pos += PCAP_RECORD + caplen
            packets += 1
        self.packets += packets
        return pos

    def _pcapng(self, data: bytes, pos: int, size: int) -> int:
        while pos + BLOCK_HEAD <= size:
            if data[pos : pos + 4] == pcapng.MAGIC:
                order = pcapng.BYTE_ORDERS.get(data[pos + 8 : pos + 12])
                if order is None:
                    raise StreamError("a pcapng section without a byte-order magic")
                self.order = order
            kind, length = struct.unpack_from(self.order + "II", data, pos)
            if length < BLOCK_HEAD or length % 4 or length > pcapng.MAX_BLOCK:
                raise StreamError(f"pcapng block length {length} is impossible")
            if kind in pcapng.PACKET_BLOCKS:
                self.packets += 1
            pos += length
        return pos

    def whole(self) -> bool:
        """Whether the bytes so far are a file header and whole records, nothing cut."""
        return bool(self.kind) and not self._skip and not self._tail and not self._start
