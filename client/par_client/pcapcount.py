"""Count the packets of a pcap or pcapng stream as it passes, for the download's summary line."""

from __future__ import annotations

import struct

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\x3c\x4d": ">",
}
PCAPNG_SECTION = b"\x0a\x0d\x0d\x0a"
PCAPNG_PACKET_BLOCKS = {2, 3, 6}  # obsolete packet, simple packet, enhanced packet


class PacketCounter:
    """Fed the bytes in order; ``packets`` is how many whole records went by (None: not a capture)."""

    def __init__(self) -> None:
        self.packets: int | None = 0
        self._buffer = bytearray()
        self._kind: str | None = None  # "pcap" or "pcapng"
        self._order = "<"
        self._skip = 0  # bytes of the current record still to pass

    def feed(self, data: bytes) -> None:
        if self.packets is None:
            return
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
        self._buffer += data
        self._parse()

    def _parse(self) -> None:
        buf = self._buffer
        pos = 0
        if self._kind is None:
            if len(buf) < 24:
                return
            if bytes(buf[:4]) in PCAP_MAGICS:
                self._kind, self._order, pos = "pcap", PCAP_MAGICS[bytes(buf[:4])], 24
            elif bytes(buf[:4]) == PCAPNG_SECTION:
                self._kind = "pcapng"
            else:
                self.packets = None
                self._buffer = bytearray()
                return
        while self.packets is not None:
            if self._kind == "pcap":
                if len(buf) - pos < 16:
                    break
                (length,) = struct.unpack_from(self._order + "I", buf, pos + 8)
                size, counted = 16 + length, True
            else:
                if len(buf) - pos < 12:
                    break
                if bytes(buf[pos : pos + 4]) == PCAPNG_SECTION:
                    magic = bytes(buf[pos + 8 : pos + 12])
                    self._order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
                block_type, size = struct.unpack_from(self._order + "II", buf, pos)
                counted = block_type in PCAPNG_PACKET_BLOCKS
                if size < 12:
                    self.packets = None
                    break
            if counted:
                self.packets += 1
            available = len(buf) - pos
            if available < size:
                self._skip = size - available
                pos = len(buf)
                break
            pos += size
        del buf[:pos]
