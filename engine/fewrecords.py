"""A classic pcap file's few candidate records, read, decided and encoded in one loop.

A file whose index names fewer candidates than the bulk path pays for (``engine.bulk.BULK_MIN``: a
host's flow in a one-minute file, a small query over many files) is read record by record, as
``FilePlan.records`` reads any file: the same reads (``engine.formats.access``: one read serves the
records near each other, a lone one costs about its own size), the same checks of each record's
length and time, the same decision (``engine.query.indexed_records``: the window, then the flow,
or the endpoints for a later fragment). Here the three are one loop and no ``Record`` is made: a
record kept whose bytes are already the answer's (a little-endian file of the answer's precision
with a normalised fraction, a classic pcap answer) is copied as it is, header and all; any other
is encoded by the answer's writer. Damage met (an impossible length or time) hands the rest of
the file to the per-record path, which meets it again and answers as it always does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .dissect import dissect
from .formats import CaptureError, CaptureWriter, PcapCapture, Record
from .formats.access import read_window
from .formats.capture import MAX_CAPLEN, MAX_TS_NS
from .formats.pcap import RECORD_HEADER_SIZE
from .pieces import Piece, encoded_pieces


def few_record_pieces(
    capture: PcapCapture,
    offsets: list[int],
    m,
    writer: CaptureWriter,
    piece_bytes: int,
    rest: Callable[[np.ndarray, int], Iterator[Record]],
) -> Iterator[Piece]:
    """The selected records at the index's ``offsets`` (ascending) as pieces of about ``piece_bytes``.

    ``m`` is the query's matcher; ``rest(offsets, last)`` the per-record path for the offsets left
    when a record proves damaged, ``last`` the offset of the last record already answered.
    """
    unpack, scale, linktype = capture.record_header.unpack_from, capture.scale, capture.linktype
    as_is = not writer.pcapng and capture.order == "<" and capture.nanosecond == writer.nanosecond
    max_frac = 1_000_000_000 if capture.nanosecond else 1_000_000
    start_ns, end_ns, flow, endpoints = m.start_ns, m.end_ns, m.flow, m.endpoints
    parts: list[bytes] = []
    times: list[int] = []
    ends: list[int] = []
    size, last, base, window = 0, -1, 0, b""
    for n, offset in enumerate(offsets):
        i = offset - base
        try:
            if i < 0 or i + RECORD_HEADER_SIZE > len(window):
                base, window, i = offset, read_window(capture, offsets, n), 0
                if len(window) < RECORD_HEADER_SIZE:
                    break  # cut short by the end of the file
            secs, frac, caplen, orig_len = unpack(window, i)
            if caplen > MAX_CAPLEN:
                raise CaptureError(capture.path, offset, f"record length {caplen} is impossible")
            end = i + RECORD_HEADER_SIZE + caplen
            if end > len(window):
                base, window, i = offset, read_window(capture, offsets, n, RECORD_HEADER_SIZE + caplen), 0
                end = RECORD_HEADER_SIZE + caplen
                if end > len(window):
                    break
            ts = secs * 1_000_000_000 + frac * scale
            if ts >= MAX_TS_NS:
                raise CaptureError(
                    capture.path, offset, f"packet time {ts} ns is outside what a pcap can hold"
                )
        except CaptureError:
            if parts:
                yield _piece(times, ends, parts)
            yield from encoded_pieces(rest(np.array(offsets[n:], dtype=np.int64), last), writer, piece_bytes)
            return
        if not start_ns <= ts <= end_ns:
            continue
        data = window[i + RECORD_HEADER_SIZE : end]
        f = dissect(linktype, data)
        if f is None or not (endpoints(f) if f.later_fragment else flow(f, linktype, data)):
            continue
        if as_is and frac < max_frac:
            encoded = window[i:end]
        else:
            encoded = writer.record(Record(offset, ts, linktype, data, orig_len))
        last = offset
        parts.append(encoded)
        times.append(ts)
        size += len(encoded)
        ends.append(size)
        if size >= piece_bytes:
            yield _piece(times, ends, parts)
            parts, times, ends, size = [], [], [], 0
    if parts:
        yield _piece(times, ends, parts)


def _piece(times: list[int], ends: list[int], parts: list[bytes]) -> Piece:
    return Piece(np.array(times, dtype=np.int64), np.array(ends, dtype=np.int64), b"".join(parts))
