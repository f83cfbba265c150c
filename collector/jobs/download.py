"""A finished export's file over HTTP: whole, or the one byte range asked (``Range``, ``206``).

Only the simple form a resuming client sends is answered with a 206: one range, ``bytes=A-B``,
``bytes=A-`` or ``bytes=-N``; several ranges are answered with the whole file (allowed by
RFC 9110), a range past the end is a 416. ``If-Range`` with another ETag gets the whole file.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from collector.limits import STREAM_RENEW
from collector.requestlog import RequestLog

CHUNK = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    pass


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def asked_span(header: str, size: int) -> Span | None:
    """The one range of ``header`` within a file of ``size`` bytes; None: the whole file."""
    header = header.strip()
    if not header:
        return None
    found = _RANGE.fullmatch(header.replace(" ", ""))
    if found is None:
        return None  # several ranges, or another unit: the whole file
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0:
            raise RangeNotSatisfiable()
        return Span(max(0, size - count), size - 1) if size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable()
    return Span(start, end)


class FileBody:
    """The bytes of ``span`` of an open file, read as sent, counted; the log row written at the end."""

    def __init__(self, fd: int, span: Span, entry: RequestLog, status: int) -> None:
        self.fd = fd
        self.status = status
        self.span = span
        self.entry = entry
        self.sent = 0
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        position, left = self.span.start, self.span.length
        renew_at = time.monotonic() + STREAM_RENEW
        while left > 0:
            chunk = os.pread(self.fd, min(CHUNK, left), position)
            if not chunk:
                break
            yield chunk
            self.sent += len(chunk)
            position += len(chunk)
            left -= len(chunk)
            if self.entry.stream_slot is not None and time.monotonic() > renew_at:
                self.entry.stream_slot.renew()
                renew_at = time.monotonic() + STREAM_RENEW
        self.done = left == 0

    def close(self) -> None:
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        self.entry.finish(self.status, self.sent, "" if self.done else "client went away")
