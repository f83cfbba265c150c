"""Reading the records at known offsets (an index's), in ascending order.

Classic pcap records are read through a window sized to the records it serves: from one offset
to the furthest of the next offsets within READ_WINDOW, plus RECORD_TAIL for the last record (a
longer one is read again, whole), so near records share one read and a lone record costs a
read of about its own size, not 64 KiB. A pcapng block is read where it starts (its section's byte order and interfaces known beforehand,
``PcapngCapture.learn_blocks``). A record cut short by the end of the file ends the read.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import islice

from .capture import MAX_TS_NS, Capture, Record, check_caplen, check_time
from .pcap import RECORD_HEADER_SIZE, PcapCapture

READ_WINDOW = 1 << 16  # one read serves the records this near each other
RECORD_TAIL = 2048  # read past the last offset a window serves: an Ethernet frame and its header fit
LOOKAHEAD = 4096  # offsets looked at ahead to size a window


def records_at(capture: Capture, offsets: Iterable[int]) -> Iterator[Record]:
    """The records of ``capture`` at ascending ``offsets``."""
    if not isinstance(capture, PcapCapture):
        for offset in offsets:
            record = capture.record_at(offset)
            if record is None:
                return
            yield record
        return
    linktype, at = capture.linktype, RecordWindow(capture)
    ahead = iter(offsets)
    while chunk := list(islice(ahead, LOOKAHEAD)):
        for n, offset in enumerate(chunk):
            if not at.read(chunk, n):
                return  # cut short by the end of the file
            yield Record(
                offset, at.ts, linktype, at.window[at.start + RECORD_HEADER_SIZE : at.end], at.orig_len
            )


class RecordWindow:
    """The classic pcap record at one of ascending offsets, read through the window that serves it.

    ``read(offsets, n)`` finds record ``offsets[n]`` in the current window, or reads the window
    that serves it and its near neighbours (``read_window``); then the record is
    ``window[start:end]`` (its header and frame), with its time, fraction and original length.
    An impossible length or time is CaptureError (``check_caplen``, ``check_time``).
    """

    def __init__(self, capture: PcapCapture) -> None:
        self.capture, self.unpack, self.scale = capture, capture.record_header.unpack_from, capture.scale
        self.base, self.window = 0, b""
        self.start = self.end = self.ts = self.frac = self.orig_len = 0

    def read(self, offsets: list[int], n: int) -> bool:
        """Record ``offsets[n]``: False when the file ends before it does."""
        offset, capture = offsets[n], self.capture
        i = offset - self.base
        if i < 0 or i + RECORD_HEADER_SIZE > len(self.window):
            self.base, self.window, i = offset, read_window(capture, offsets, n), 0
            if len(self.window) < RECORD_HEADER_SIZE:
                return False
        secs, frac, caplen, self.orig_len = self.unpack(self.window, i)
        check_caplen(capture.path, offset, caplen)
        end = i + RECORD_HEADER_SIZE + caplen
        if end > len(self.window):
            self.base, self.window, i = (
                offset,
                read_window(capture, offsets, n, RECORD_HEADER_SIZE + caplen),
                0,
            )
            end = RECORD_HEADER_SIZE + caplen
            if end > len(self.window):
                return False
        ts = secs * 1_000_000_000 + frac * self.scale
        if ts >= MAX_TS_NS:
            check_time(capture.path, offset, ts)
        self.start, self.end, self.ts, self.frac = i, end, ts, frac
        return True


def read_window(capture: PcapCapture, offsets: list[int], n: int, at_least: int = 0) -> bytes:
    """The bytes from ``offsets[n]`` that serve it and the next offsets within READ_WINDOW (ascending)."""
    offset = offsets[n]
    furthest = offsets[bisect_left(offsets, offset + READ_WINDOW, n) - 1]
    return capture.read(offset, max(furthest - offset + RECORD_TAIL, at_least))
