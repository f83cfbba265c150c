"""Where an answer ends: cleanly at a packet boundary, by the asked limits; what a record adds to it.

The answer's bytes are packed in ``engine.formats.writer``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.capture import MAX_CAPLEN
from ..formats.pcap import RECORD_HEADER_SIZE

# Bytes a record adds to an answer besides its frame: a classic pcap record header, or a pcapng
# Enhanced Packet Block's header, trailer and at most 3 bytes of padding.
PCAP_RECORD_OVERHEAD = RECORD_HEADER_SIZE
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
