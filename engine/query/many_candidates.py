"""Reading a query's records from classic pcap files in bulk: candidates checked with numpy, runs copied whole.

A file with a current index and many candidates is read in bulk (``indexed_pieces``): candidate
records close to each other are read with one ``preadv`` per run of them; their headers, times and
flow fields are decided with numpy over the whole read (``engine.dissection.fields``, as the index build
does; the rare packets it leaves, fragments and IPv6 extension headers, are dissected one by one);
and each run of consecutive selected records that needs no rewriting is copied as one byte range
into a ``engine.query.pieces.Piece``. Records are rewritten only where the answer's format differs from
the file's (a pcapng answer, another byte order or precision, an unnormalised fraction), their
headers built with numpy. Anything the bulk path does not expect (a record past the end of the
file, an impossible length or time) hands the rest of the file to the per-record path, which
decides it as before, so the two paths give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

from ..dissection.fields import flow_columns
from ..dissection.packet import dissect
from ..dissection.recordtable import RecordTable, gather
from ..formats import CaptureError, CaptureTruncated, CaptureWriter, PcapCapture, Record
from ..formats.capture import MAX_CAPLEN, MAX_TS_NS
from ..formats.pcap import RECORD_HEADER_SIZE
from ..formats.pcapng import EPB
from .pieces import Piece, encoded_pieces

BULK_MIN = 64  # fewer candidates in a file: the per-record path is cheaper
GAP = 1 << 16  # candidates nearer than this share one read
MAX_READ = 1 << 21  # bytes of file a bulk step reads, at most (a longer run is cut on this grid)
TAIL = 2048  # read past a run's last offset: its record's header and an Ethernet frame fit


# ---------------------------------------------------------------- the bulk path


def bulk_readable(capture: object, writer: CaptureWriter, candidates: int) -> bool:
    """Whether a file's candidates go the bulk way: a classic pcap file, enough of them."""
    return isinstance(capture, PcapCapture) and candidates >= BULK_MIN


def indexed_pieces(
    capture: PcapCapture,
    offsets: np.ndarray,
    m,
    writer: CaptureWriter,
    rest: Callable[[np.ndarray, int], Iterator[Record]],
) -> Iterator[Piece]:
    """The selected records at the index's ``offsets`` as pieces of the answer.

    ``m`` is the query's matcher (a per-record ``flow``/``endpoints`` test, maybe ``columns_match``);
    ``rest(offsets, last)`` is the per-record path for the offsets left when a read meets something
    unexpected, ``last`` the offset of the last record already answered.
    """
    # A pcapng answer, another byte order or precision: every record is rewritten (still read and
    # checked in bulk).
    copy_as_is = not writer.pcapng and capture.order == "<" and capture.nanosecond == writer.nanosecond
    max_frac = 1_000_000_000 if capture.nanosecond else 1_000_000
    last, buffer = -1, _Buffer()
    for first, stop in _steps(offsets):
        try:
            step = _read_step(capture, offsets[first:stop], buffer)
        except CaptureTruncated:
            raise
        except CaptureError:
            step = None  # a byte source's damage (a compressed frame): the per-record path names it
        if step is None:
            yield from encoded_pieces(rest(offsets[first:], last), writer)
            return
        buf, pos, head = step
        ts = head[:, 0] * 1_000_000_000 + head[:, 1] * capture.scale
        if np.any(ts >= MAX_TS_NS):
            yield from encoded_pieces(rest(offsets[first:], last), writer)
            return
        keep = _selected(buf, pos, head, ts, capture.linktype, m)
        if not keep.any():
            continue
        last = int(offsets[first + int(np.flatnonzero(keep)[-1])])
        # a fraction of a second or more in the fraction field: such a file's records are re-encoded
        as_is = copy_as_is and not np.any(head[:, 1] >= max_frac)
        yield _piece(buf, pos, head, ts, keep, as_is, capture.linktype, writer)


def _steps(offsets: np.ndarray) -> Iterator[tuple[int, int]]:
    """(first, stop) of the candidates each bulk step reads: runs near each other, up to MAX_READ of file."""
    n = len(offsets)
    if not n:
        return
    # A run is cut where candidates lie GAP apart and on a grid of MAX_READ; a step takes runs
    # until it has read about MAX_READ.
    cut = np.flatnonzero((np.diff(offsets) > GAP) | (np.diff((offsets - offsets[0]) // MAX_READ) != 0)) + 1
    starts = np.concatenate(([0], cut)).tolist()
    stops = np.concatenate((cut, [n]))
    spans = (offsets[stops - 1] - offsets[np.array(starts)] + TAIL).tolist()
    first, read = 0, 0
    for start, span in zip(starts, spans, strict=True):
        if read and read + span > MAX_READ:
            yield first, start
            first, read = start, 0
        read += span
    yield first, n


class _Buffer:
    """The bytes one bulk step reads, in one buffer kept for the whole answer (no new memory per step)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def read(
        self, capture: PcapCapture, offsets: np.ndarray, sizes: np.ndarray
    ) -> tuple[memoryview, np.ndarray]:
        """Read ``sizes`` bytes at each of ``offsets``, one after another: (the bytes, how many each read got)."""
        total = int(sizes.sum())
        if len(self.data) < total:
            self.data = bytearray(max(total, MAX_READ + MAX_READ // 8))  # a step's read, whatever its tail
        view = memoryview(self.data)
        fd, base = capture.fileno(), 0  # a local file is read straight into the buffer
        readinto = getattr(capture.source, "readinto", None)
        got = np.empty(len(offsets), dtype=np.int64)
        for n, (offset, size) in enumerate(zip(offsets.tolist(), sizes.tolist(), strict=True)):
            if fd is not None:
                count = os.preadv(fd, [view[base : base + size]], offset)
                if count < size:
                    capture.ends_at(offset + count)  # the file shrank while being read: CaptureTruncated
            elif readinto is not None:  # a compressed source: its frames copied straight in
                count = readinto(view[base : base + size], offset)
            else:
                data = capture.read(offset, size)  # any other byte source (checks the end the same way)
                count = len(data)
                view[base : base + count] = data
            got[n] = count
            base += count
        return view[:base].toreadonly(), got


def _read_step(
    capture: PcapCapture, offsets: np.ndarray, buffer: _Buffer
) -> tuple[memoryview, np.ndarray, np.ndarray] | None:
    """(bytes read, each candidate's position in them, its record header as int64 columns); None when
    a record is not whole in the file or cannot be right."""
    cut = np.flatnonzero(np.diff(offsets) > GAP) + 1
    starts = np.concatenate(([0], cut))
    stops = np.concatenate((cut, [len(offsets)]))
    firsts = offsets[starts]
    sizes = offsets[stops - 1] - firsts + TAIL
    run = np.repeat(np.arange(len(starts)), stops - starts)
    for _ in range(2):
        buf, lengths = buffer.read(capture, firsts, sizes)
        bases = np.cumsum(lengths) - lengths
        pos = offsets - firsts[run] + bases[run]
        if np.any(offsets - firsts[run] + RECORD_HEADER_SIZE > lengths[run]):
            return None  # a record header past the end of the file
        head = gather(buf, len(buf), pos, RECORD_HEADER_SIZE).view(capture.order + "u4").astype(np.int64)
        caplen = head[:, 2]
        if np.any(caplen > MAX_CAPLEN):
            return None
        need = offsets + RECORD_HEADER_SIZE + caplen - firsts[run]  # bytes of its run each record needs
        if not np.any(need > lengths[run]):
            return buf, pos, head
        if np.any(lengths < sizes):
            return None  # a run cut by the end of the file: its last record is not whole
        sizes = np.maximum(sizes, np.maximum.reduceat(need, starts))  # long frames: read their runs again
    return None


class LaterFragment(Exception):
    """A scan met a later fragment: whether it belongs depends on records before it (the per-record path's rule)."""


def _selected(
    buf: memoryview, pos: np.ndarray, head: np.ndarray, ts: np.ndarray, linktype: int, m, scan: bool = False
) -> np.ndarray:
    """Which of the records read are packets of the selection in its window.

    ``scan``: the records are every record of a stretch of the file (not an index's candidates);
    LaterFragment when one is a later fragment.
    """
    n = len(pos)
    keep = (ts >= m.start_ns) & (ts <= m.end_ns)
    table = RecordTable(
        offset=pos,
        data=pos + RECORD_HEADER_SIZE,
        caplen=head[:, 2],
        orig_len=head[:, 3],
        ts_ns=ts,
        linktype=np.full(n, linktype, dtype=np.int64),
        meta_offsets=[],
        simple_blocks=False,
    )
    fields, slow = flow_columns(buf, len(buf), table)
    test = getattr(m, "columns_match", None)
    matched = test(fields) if test is not None else None
    if matched is None:
        rows = np.flatnonzero(keep)  # every record one by one
    else:
        per_record = np.zeros(n, dtype=bool)
        per_record[slow] = True
        keep_fast = keep & ~per_record & matched
        rows = np.flatnonzero(per_record if scan else keep & per_record)
        keep = keep_fast
    for row in rows.tolist():
        start = int(pos[row]) + RECORD_HEADER_SIZE
        data = bytes(buf[start : start + int(head[row, 2])])
        f = dissect(linktype, data)
        if f is None:
            keep[row] = False
            continue
        if scan and f.later_fragment:
            raise LaterFragment()
        if not m.start_ns <= int(ts[row]) <= m.end_ns:
            keep[row] = False
            continue
        # A later fragment shows no ports; the index tied it to its first fragment's flow.
        keep[row] = bool(m.endpoints(f) if f.later_fragment else m.flow(f, linktype, data))
    return keep


def _piece(
    buf: memoryview,
    pos: np.ndarray,
    head: np.ndarray,
    ts: np.ndarray,
    keep: np.ndarray,
    copy_as_is: bool,
    linktype: int,
    writer: CaptureWriter,
) -> Piece:
    """The kept records as a piece: runs of consecutive records copied as they are, or all re-encoded."""
    rows = np.flatnonzero(keep)
    starts = pos[rows]
    stops = starts + RECORD_HEADER_SIZE + head[rows, 2]
    if not copy_as_is:
        return _reencoded(buf, starts, stops, head[rows, 3], ts[rows], linktype, writer)
    # one slice per run of records that follow each other in the file
    breaks = np.flatnonzero(starts[1:] != stops[:-1]) + 1
    run_starts = starts[np.concatenate(([0], breaks))].tolist()
    run_stops = stops[np.concatenate((breaks - 1, [len(rows) - 1]))].tolist()
    if len(run_starts) == 1:
        data = bytes(buf[run_starts[0] : run_stops[0]])
    else:
        data = b"".join([buf[a:b] for a, b in zip(run_starts, run_stops, strict=True)])
    return Piece(ts[rows], np.cumsum(stops - starts), data)


def _reencoded(
    buf: memoryview,
    starts: np.ndarray,
    stops: np.ndarray,
    orig_len: np.ndarray,
    ts: np.ndarray,
    linktype: int,
    writer: CaptureWriter,
) -> Piece:
    """Records re-encoded as ``writer`` writes them (``CaptureWriter.record``), their headers built with numpy."""
    n = len(starts)
    caplen = stops - starts - RECORD_HEADER_SIZE
    if writer.pcapng:
        ticks = ts if writer.nanosecond else ts // 1000
        padded = caplen + (-caplen % 4)
        total = 32 + padded  # block head 8, EPB fields 20, the padded frame, the trailing length 4
        heads = np.empty((n, 7), dtype="<u4")
        heads[:, 0], heads[:, 1], heads[:, 2] = EPB, total, writer.interface(linktype)
        heads[:, 3], heads[:, 4] = ticks >> 32, ticks & 0xFFFFFFFF
        heads[:, 5], heads[:, 6] = caplen, orig_len
        # each block's end: the frame's padding, then the block's length
        ends = np.zeros((n, 8), dtype=np.uint8)
        pad = padded - caplen
        length = total.astype("<u4").view(np.uint8).reshape(n, 4)
        for k in range(4):
            ends[np.arange(n), pad + k] = length[:, k]
        end_sizes = (pad + 4).tolist()
    else:
        secs, frac = np.divmod(ts, 1_000_000_000)
        heads = np.empty((n, 4), dtype="<u4")
        heads[:, 0], heads[:, 1] = secs, frac if writer.nanosecond else frac // 1000
        heads[:, 2], heads[:, 3] = caplen, orig_len
    width = heads.shape[1] * 4
    head_bytes = memoryview(heads.tobytes())
    parts: list[memoryview] = []
    frames = zip((starts + RECORD_HEADER_SIZE).tolist(), stops.tolist(), strict=True)
    if writer.pcapng:
        end_bytes = memoryview(ends.tobytes())
        for i, ((a, b), size) in enumerate(zip(frames, end_sizes, strict=True)):
            parts += (head_bytes[i * width : (i + 1) * width], buf[a:b], end_bytes[i * 8 : i * 8 + size])
        sizes = 32 + padded
    else:
        for i, (a, b) in enumerate(frames):
            parts += (head_bytes[i * width : (i + 1) * width], buf[a:b])
        sizes = RECORD_HEADER_SIZE + caplen
    return Piece(ts, np.cumsum(sizes), b"".join(parts))
