"""An answer as pieces of encoded records, merged in time order across files and ended at its limits.

An answer is built from ``Piece``s: the encoded bytes of some records, with each record's time and
where it ends. Every file of a query gives a stream of pieces in file order (read in bulk,
``engine.query.many_candidates``, or record by record, ``encoded_pieces``), and ``merged`` takes them in time order
across files exactly as ``heapq.merge`` takes records (ties to the file listed first), but a run at
a time: the records of one file that come before every other file's next record go out as one
slice. ``answered`` ends the stream at the asked limits, at a record boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..formats import CaptureWriter, Record

PIECE_BYTES = 1 << 16  # encoded bytes of a piece of the per-record path


@dataclass
class Piece:
    """Encoded records: record ``i`` is ``data[ends[i - 1]:ends[i]]`` (0 for the first), its time ``ts[i]``."""

    ts: np.ndarray  # int64 ns
    ends: np.ndarray  # int64, ascending
    data: bytes


def encoded_pieces(
    records: Iterable[Record], writer: CaptureWriter, piece_bytes: int = PIECE_BYTES
) -> Iterator[Piece]:
    """Records encoded one by one by ``writer``, a piece of about ``piece_bytes`` at a time."""
    encode = writer.record
    parts: list[bytes] = []
    times: list[int] = []
    ends: list[int] = []
    size = 0
    for record in records:
        data = encode(record)
        parts.append(data)
        times.append(record.ts_ns)
        size += len(data)
        ends.append(size)
        if size >= piece_bytes:
            yield Piece(np.array(times, dtype=np.int64), np.array(ends, dtype=np.int64), b"".join(parts))
            parts, times, ends, size = [], [], [], 0
    if parts:
        yield Piece(np.array(times, dtype=np.int64), np.array(ends, dtype=np.int64), b"".join(parts))


# ---------------------------------------------------------------- merge and limits


class _Source:
    """One file's pieces as the merge reads them: the current piece and the next record in it."""

    def __init__(self, order: int, pieces: Iterator[Piece], low: int | None):
        self.order, self.pieces, self.low = order, pieces, low
        self.piece: Piece | None = None
        self.at = 0

    def head(self) -> int:
        """The time of its next record (its known lower bound while not yet read)."""
        if self.piece is None:
            assert self.low is not None
            return self.low
        return int(self.piece.ts[self.at])

    def advance(self) -> bool:
        """Read its next non-empty piece; False at its end."""
        for piece in self.pieces:
            if len(piece.ts):
                self.piece, self.at, self.low = piece, 0, None
                return True
        self.piece = None
        return False


def merged(sources: list[tuple[Iterator[Piece], int | None]]) -> Iterator[tuple[Piece, int, int]]:
    """(piece, i, j): records ``i:j`` of a piece, in time order across ``sources``, ties to the first listed.

    Each source is (its pieces in file order, a lower bound of its times or None). A source is read
    only once its bound comes up, so files later in time hold no buffer while earlier ones stream.
    The order is exactly ``heapq.merge``'s over the records, keyed by time.
    """
    waiting = [_Source(n, pieces, low) for n, (pieces, low) in enumerate(sources)]
    active: list[_Source] = []
    for source in [s for s in waiting if s.low is None]:
        waiting.remove(source)
        if source.advance():
            active.append(source)
    while active or waiting:
        candidates = active + waiting
        best = min(candidates, key=lambda s: (s.head(), s.order))
        if best.piece is None:  # a file whose bound comes first: read it now
            waiting.remove(best)
            if best.advance():
                active.append(best)
            continue
        piece, at = best.piece, best.at
        others = [(s.head(), s.order) for s in candidates if s is not best]
        if others:
            bound, order = min(others)
            rest = piece.ts[at:]
            past = rest > bound if best.order < order else rest >= bound
            stop = at + (int(np.argmax(past)) if past.any() else len(rest))
        else:
            stop = len(piece.ts)
        yield piece, at, stop
        best.at = stop
        if stop == len(piece.ts) and not best.advance():
            active.remove(best)


def answered(
    header: bytes, runs: Iterable[tuple[Piece, int, int]], limits, chunk_size: int = 1 << 16
) -> Iterator[bytes]:
    """The header, then the runs' bytes in chunks of at least ``chunk_size``, stopping before a limit is passed.

    ``limits`` (``engine.query.answer.Limits`` or None): after ``packets`` records, before the answer
    (header included) would pass ``bytes``.
    """
    packets = limits.packets if limits is not None else None
    budget = limits.bytes if limits is not None else None
    parts: list[bytes | memoryview] = [header]
    size = total = len(header)
    count = 0
    for piece, i, j in runs:
        full = j
        if packets is not None:
            j = min(j, i + packets - count)
        low = int(piece.ends[i - 1]) if i else 0
        if budget is not None and j > i:
            fits = np.searchsorted(piece.ends[i:j] - low, budget - total, side="right")
            j = i + int(fits)
        if j > i:
            high = int(piece.ends[j - 1])
            if not parts and high - low == len(piece.data) >= chunk_size:
                yield piece.data  # a whole piece, a chunk of its own: not copied again
                count += j - i
                total += high - low
                if j < full:
                    break
                continue
            parts.append(memoryview(piece.data)[low:high])
            size += high - low
            total += high - low
            count += j - i
        if j < full:
            break
        if size >= chunk_size:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)
