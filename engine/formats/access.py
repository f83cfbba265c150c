"""Reading the records at known offsets (an index's), in ascending order.

Classic pcap records are read through a window, so records near each other share one read; a
pcapng block is read where it starts (its section's byte order and interfaces known beforehand,
``PcapngCapture.learn_blocks``). A record cut short by the end of the file ends the read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .capture import MAX_TS_NS, Capture, Record, check_caplen, check_time
from .pcap import RECORD_HEADER_SIZE, PcapCapture

READ_WINDOW = 1 << 16  # one read serves the records near each other


def records_at(capture: Capture, offsets: Iterable[int]) -> Iterator[Record]:
    """The records of ``capture`` at ascending ``offsets``."""
    if not isinstance(capture, PcapCapture):
        for offset in offsets:
            record = capture.record_at(offset)
            if record is None:
                return
            yield record
        return
    unpack, scale, linktype = capture.record_header.unpack_from, capture.scale, capture.linktype
    base, window = 0, b""
    for offset in offsets:
        i = offset - base
        if i < 0 or i + RECORD_HEADER_SIZE > len(window):
            base, window, i = offset, capture.read(offset, READ_WINDOW), 0
            if len(window) < RECORD_HEADER_SIZE:
                return  # cut short by the end of the file
        secs, frac, caplen, orig_len = unpack(window, i)
        check_caplen(capture.path, offset, caplen)
        end = i + RECORD_HEADER_SIZE + caplen
        if end > len(window):
            base, window, i = offset, capture.read(offset, max(READ_WINDOW, RECORD_HEADER_SIZE + caplen)), 0
            end = RECORD_HEADER_SIZE + caplen
            if end > len(window):
                return
        ts = secs * 1_000_000_000 + frac * scale
        if ts >= MAX_TS_NS:
            check_time(capture.path, offset, ts)
        yield Record(offset, ts, linktype, window[i + 16 : end], orig_len)
