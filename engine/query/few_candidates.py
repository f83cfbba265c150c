"""A classic pcap file's few candidate records, read, decided and encoded in one loop.

A file whose index names fewer candidates than the bulk path pays for (``engine.query.many_candidates.BULK_MIN``: a
host's flow in a one-minute file, a small query over many files) is read record by record, as
``FilePlan.records`` reads any file: the same reads (``engine.formats.access``: one read serves the
records near each other, a lone one costs about its own size), the same checks of each record's
length and time (``RecordWindow``, which that path reads through too), the same decision
(``engine.query.per_record.indexed_records``: the window, then the flow, or the endpoints for a later
fragment). Here the three are one loop and no ``Record`` is made: a
record kept whose bytes are already the answer's (a little-endian file of the answer's precision
with a normalised fraction, a classic pcap answer) is copied as it is, header and all; any other
is encoded by the answer's writer. Damage met (an impossible length or time) hands the rest of
the file to the per-record path, which meets it again and answers as it always does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..dissection.packet import dissect
from ..formats import CaptureError, CaptureWriter, PcapCapture, Record
from ..formats.access import RecordWindow
from ..formats.pcap import RECORD_HEADER_SIZE
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
    linktype, at = capture.linktype, RecordWindow(capture)
    as_is = not writer.pcapng and capture.order == "<" and capture.nanosecond == writer.nanosecond
    max_frac = 1_000_000_000 if capture.nanosecond else 1_000_000
    start_ns, end_ns, flow, endpoints = m.start_ns, m.end_ns, m.flow, m.endpoints
    parts: list[bytes] = []
    times: list[int] = []
    ends: list[int] = []
    size, last = 0, -1
    for n, offset in enumerate(offsets):
        try:
            if not at.read(offsets, n):
                break  # cut short by the end of the file
        except CaptureError:
            if parts:
                yield _piece(times, ends, parts)
            yield from encoded_pieces(rest(np.array(offsets[n:], dtype=np.int64), last), writer, piece_bytes)
            return
        ts, window, i, end = at.ts, at.window, at.start, at.end
        if not start_ns <= ts <= end_ns:
            continue
        data = window[i + RECORD_HEADER_SIZE : end]
        f = dissect(linktype, data)
        if f is None or not (endpoints(f) if f.later_fragment else flow(f, linktype, data)):
            continue
        if as_is and at.frac < max_frac:
            encoded = window[i:end]
        else:
            encoded = writer.record(Record(offset, ts, linktype, data, at.orig_len))
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
