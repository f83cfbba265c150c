"""What reading a capture file yields and how it fails, and the base of the two readers.

Reading yields ``Record(offset, ts_ns, linktype, data, orig_len)``: ``offset`` is where the record
(classic pcap) or block (pcapng) starts in the file, ``ts_ns`` integer nanoseconds since the epoch.
A record cut short by the end of the file (a file still being written) ends the read cleanly; a
record that cannot be right (impossible length, broken block, a time the classic pcap of an answer cannot
hold: before 1970 or from 2106 on) raises ``CaptureError`` naming the file and the byte offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .source import ByteSource, open_source

MAX_CAPLEN = 262144  # libpcap's largest snapshot length for the link types we read
MAX_TS_NS = (1 << 32) * 1_000_000_000  # a classic pcap (the answer) holds u32 seconds since 1970


class CaptureError(ValueError):
    """A capture file that cannot be read; the message names the file and the byte offset."""

    def __init__(self, path: str | Path, offset: int, problem: str):
        super().__init__(f"{path}: {problem} at byte offset {offset}")
        self.path = str(path)
        self.offset = offset


class IncompleteHeader(CaptureError):
    """A file too short to hold its own file header yet (just created, still being written)."""


class CaptureTruncated(CaptureError):
    """The file ends before the size it had when it was opened: records it held have disappeared.

    Capture files only grow while they are written, so a file that shrinks under a reader (a
    truncation, a capture tool restarted over the same name) is damage: an answer that met it
    would look complete while missing records that were there when it began.
    """


class Record(NamedTuple):
    offset: int
    ts_ns: int
    linktype: int
    data: bytes
    orig_len: int


def check_caplen(path: str | Path, offset: int, caplen: int) -> None:
    """The one rule for a record's captured length: more than MAX_CAPLEN is damage, not a packet."""
    if caplen > MAX_CAPLEN:
        raise CaptureError(path, offset, f"record length {caplen} is impossible")


def check_caplens(path: str | Path, offsets: np.ndarray, caplens: np.ndarray) -> None:
    """``check_caplen`` over many records at once: the first impossible one is the error."""
    bad = np.flatnonzero(caplens > MAX_CAPLEN)
    if len(bad):
        check_caplen(path, int(offsets[bad[0]]), int(caplens[bad[0]]))


def check_time(path: str | Path, offset: int, ts_ns: int) -> None:
    """The one rule for a record's time: one a classic pcap (the answer) cannot hold is damage."""
    if not 0 <= ts_ns < MAX_TS_NS:
        raise CaptureError(path, offset, f"packet time {ts_ns} ns is outside what a pcap can hold")


def check_times(path: str | Path, offsets: np.ndarray, times: np.ndarray) -> None:
    """``check_time`` over many records at once: the first impossible one is the error."""
    bad = np.flatnonzero((times < 0) | (times >= MAX_TS_NS))
    if len(bad):
        check_time(path, int(offsets[bad[0]]), int(times[bad[0]]))


class Capture:
    """An open capture file: iterate it for records in file order, or read records at known offsets.

    ``engine.formats.open_capture`` picks the subclass (classic pcap or pcapng) by the magic number.
    """

    kind = ""

    def __init__(self, path: str | Path, source: ByteSource | None = None):
        self.path = path if isinstance(path, Path) else Path(path)
        self.source = source if source is not None else open_source(self.path)
        try:
            self.opened_size = self.size()  # what a reader may count on; a live file may grow past it
            self._open()
        except BaseException:
            self.source.close()
            raise

    def _open(self) -> None:
        """Read the file header (and, for pcapng, the blocks before the first packet)."""
        raise NotImplementedError

    @property
    def linktypes(self) -> list[int]:
        """Link types of the records: the file's, or those of every pcapng interface read so far."""
        raise NotImplementedError

    @property
    def nanosecond(self) -> bool:
        """True when times are finer than microseconds."""
        raise NotImplementedError

    @property
    def meta_offsets(self) -> list[int]:
        """pcapng: offsets of the section header and interface blocks read so far; [] for pcap."""
        return []

    def __iter__(self) -> Iterator[Record]:
        raise NotImplementedError

    def record_at(self, offset: int) -> Record | None:
        """The record starting at ``offset``; None when the file ends inside it."""
        raise NotImplementedError

    def records_at(self, offsets: Iterable[int]) -> Iterator[Record]:
        """The records at ascending ``offsets`` (``engine.formats.access``)."""
        from .access import records_at

        return records_at(self, offsets)

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def _file(self) -> ByteSource:
        """The byte source, by its former name (a file object: ``closed`` tells whether it is)."""
        return self.source

    def fileno(self) -> int | None:
        """The local file's descriptor (a fast path's ``preadv``, ``mmap``); None when not a local file."""
        return self.source.fileno()

    def size(self) -> int:
        return self.source.size()

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file; see ``ends_at``)."""
        data = self.source.read(offset, size)
        if len(data) < size:
            self.ends_at(offset + len(data))
        return data

    def ends_at(self, offset: int) -> None:
        """A read met the end of the file at ``offset``: CaptureTruncated if the file was longer when opened."""
        if offset < self.opened_size:
            raise CaptureTruncated(
                self.path, offset, f"the file shrank while being read (it held {self.opened_size} bytes)"
            )
