"""Scanning a classic pcap file without an index (the live file) in bulk: every record checked with numpy.

The file is read a step of MAX_READ bytes at a time; the record headers of the step are followed
(the one per-record loop, a header read each), then every record is decided as ``engine.query.many_candidates``
decides an index's candidates, and runs of selected records are copied whole. A later fragment
belongs to a flow by records before it (the fragment rule of ``engine.dissection.packet``), which the
per-record scan keeps; meeting one, or anything the per-record scan would treat as damage, hands the
file to that scan, which answers the records after the last one already answered. A last record
cut short by the end of the file is a file still being written: the scan ends before it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import numpy as np

from ..dissection.fields import FlowColumns
from ..dissection.recordtable import gather
from ..formats import CaptureError, CaptureTruncated, CaptureWriter, PcapCapture, Record
from ..formats.capture import MAX_CAPLEN, MAX_TS_NS
from ..formats.pcap import FILE_HEADER_SIZE, RECORD_HEADER_SIZE
from . import many_candidates as bulk
from . import pieces

SCAN_MIN = 1 << 20  # smaller files: the per-record scan is as quick


def scannable(capture: object, m, size: int) -> bool:
    """Whether a file without an index is scanned in bulk: a classic pcap, a selection numpy decides."""
    if not isinstance(capture, PcapCapture) or size < SCAN_MIN:
        return False
    test = getattr(m, "columns_match", None)
    if test is None:
        return False
    empty = FlowColumns(*(np.zeros(0, dtype=t) for t in (bool, *["u8"] * 4, "u1", "u2", "u2")))
    return test(empty) is not None


def _walk(buf: memoryview, order: str) -> tuple[list[int], int, bool]:
    """(offsets of the whole records in ``buf``, where the first incomplete one starts, an impossible length met)."""
    unpack = struct.Struct(order + "I").unpack_from
    offsets: list[int] = []
    append = offsets.append
    at, size = 0, len(buf)
    while at + RECORD_HEADER_SIZE <= size:
        caplen = unpack(buf, at + 8)[0]
        if caplen > MAX_CAPLEN:
            return offsets, at, True
        end = at + RECORD_HEADER_SIZE + caplen
        if end > size:
            break
        append(at)
        at = end
    return offsets, at, False


def scanned_pieces(
    capture: PcapCapture, m, writer: CaptureWriter, rest: Callable[[int], Iterator[Record]]
) -> Iterator[pieces.Piece]:
    """The file's selected records as pieces, every record read; ``rest(last)`` is the per-record scan of
    the records after offset ``last``, for what the bulk way leaves."""
    copy_as_is = not writer.pcapng and capture.order == "<" and capture.nanosecond == writer.nanosecond
    max_frac = 1_000_000_000 if capture.nanosecond else 1_000_000
    buffer = bulk._Buffer()
    at, last = FILE_HEADER_SIZE, -1
    while True:
        sizes = np.array([bulk.MAX_READ], dtype=np.int64)
        try:
            buf, got = buffer.read(capture, np.array([at], dtype=np.int64), sizes)
        except CaptureTruncated:
            raise
        except CaptureError:
            break  # a byte source's damage (a compressed frame): the per-record scan names it
        offsets, end, impossible = _walk(buf, capture.order)
        if impossible or (not offsets and int(got[0]) == bulk.MAX_READ):
            break  # damage (or a record longer than a step can hold): the per-record scan says which
        if not offsets:
            return  # the end of the file, maybe inside a record still being written
        pos = np.array(offsets, dtype=np.int64)
        head = gather(buf, len(buf), pos, RECORD_HEADER_SIZE).view(capture.order + "u4").astype(np.int64)
        ts = head[:, 0] * 1_000_000_000 + head[:, 1] * capture.scale
        if np.any(ts >= MAX_TS_NS):
            break
        try:
            keep = bulk._selected(buf, pos, head, ts, capture.linktype, m, scan=True)
        except bulk.LaterFragment:
            break
        if keep.any():
            last = at + int(pos[np.flatnonzero(keep)[-1]])
            as_is = copy_as_is and not np.any(head[:, 1] >= max_frac)
            yield bulk._piece(buf, pos, head, ts, keep, as_is, capture.linktype, writer)
        at += end
    yield from pieces.encoded_pieces(rest(last), writer)
