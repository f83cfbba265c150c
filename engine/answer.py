"""Writing an answer: classic pcap or pcapng, ended cleanly at a packet boundary by the asked limits."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .formats import CaptureWriter, pcapng
from .formats.capture import MAX_CAPLEN
from .formats.writer import pcapng_block

IF_NAME = 2
IF_TSRESOL = 9
# Bytes a record adds to an answer besides its frame: a classic pcap record header, or a pcapng
# Enhanced Packet Block's header, trailer and at most 3 bytes of padding.
PCAP_RECORD_OVERHEAD = 16
PCAPNG_RECORD_OVERHEAD = 35
# The most one record can add to an answer: its longest frame, in a pcapng block.
MAX_RECORD_BYTES = PCAPNG_RECORD_OVERHEAD + MAX_CAPLEN


@dataclass(frozen=True)
class Limits:
    """Where an answer stops: after ``packets`` packets, before ``bytes`` bytes (header included) are exceeded."""

    packets: int | None = None
    bytes: int | None = None

    def bound(self, packets: int, size: int, header: int) -> tuple[int, int]:
        """(packets, bytes) an answer estimated at ``packets`` and ``size`` holds at most once ended here.

        ``header`` bounds the answer's file header: ``limit_packets=10`` is never more than ten of
        the longest records after it, whatever the selection holds. The file header always goes
        out whole, even past ``bytes`` (a pcapng header with long interface names).
        """
        if self.packets is not None and self.packets < packets:
            packets = self.packets
            size = min(size, header + packets * MAX_RECORD_BYTES)
        if self.bytes is not None:
            size = min(size, max(self.bytes, header))
        return packets, size


class PcapngWriter(CaptureWriter):
    """Always pcapng, one interface per link type, each named (``if_name``) after the answering node."""

    def __init__(self, linktypes: Iterable[int], nanosecond: bool, name: str):
        super().__init__(linktypes, nanosecond)
        self.pcapng = True
        self.name = name

    def header(self) -> bytes:
        section = struct.pack("<" + pcapng.SHB_FIELDS, pcapng.BYTE_ORDER_MAGIC, 1, 0, -1)
        parts = [pcapng_block(pcapng.SHB, section)]
        for linktype in self.linktypes:
            options = _option(IF_NAME, self.name.encode())
            if self.nanosecond:
                options += _option(IF_TSRESOL, b"\x09")
            options += b"\0\0\0\0"  # opt_endofopt
            interface = struct.pack("<" + pcapng.IDB_FIELDS, linktype, 0, self.snaplen)
            parts.append(pcapng_block(pcapng.IDB, interface + options))
        return b"".join(parts)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
