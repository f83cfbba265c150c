"""zstd seekable captures: independent frames of whole records, the seek table in a skippable frame at the end.

The layout is zstd's seekable format (zstd's ``contrib/seekable_format``), so ``zstd -dc`` gives the
capture back byte for byte: frames one after another, then a skippable frame (magic 0x184D2A5E)
holding one entry per frame (its compressed and decompressed size, u32 little-endian) and a footer
(the number of frames u32, a descriptor byte, the seekable magic 0x8F92EAB1 u32). Each frame holds
whole records (cut at record starts, ``write_seekable``) and its own content checksum, so a damaged frame is found when read.

``SeekableZstd`` is a ``ByteSource`` over another (a local file, an archived object): its offsets
are the decompressed capture's, so an index's offsets are unchanged. The seek table is read once
per open source; each frame a read touches is decompressed once and kept in a small cache
(``FRAMES_KEPT``). ``plan(offsets)`` tells it which records an answer will read and fetches the first
of their frames at once (so a damaged frame, or an archive out of reach, is met before the answer's
first byte); a frame missed later is fetched with the planned frames after it, nearby ones in one
read of the source below (one ranged request for an archived object).
"""

from __future__ import annotations

import struct
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .capture import CaptureError
from .source import ByteSource

SKIPPABLE_MAGIC = 0x184D2A5E
SEEKABLE_MAGIC = 0x8F92EAB1
FOOTER = struct.Struct("<IBI")  # number of frames, descriptor, seekable magic
ENTRY = struct.Struct("<II")  # compressed size, decompressed size
CHECKSUM_FLAG = 0x80
MAX_FRAME = 1 << 30  # a decompressed frame larger than this is damage, not ours

FRAME_BYTES = (
    1 << 19
)  # decompressed bytes a frame of compressible traffic holds (whole records: a little more)
SMALL_FRAME_BYTES = 1 << 16  # a frame of incompressible traffic (after a frame that did not compress)
LEVEL = 3  # zstd level, chosen by bench/tiers.py
# A frame after one that compressed less than INCOMPRESSIBLE (decompressed / compressed: encrypted
# payloads) holds SMALL_FRAME_BYTES at FAST_LEVEL: on such traffic that keeps all but ~1% of what
# the level and larger frames save, 3-4x faster (bench/tiers.py: TLS-heavy 1.064x at -1 vs 1.071x at
# 3, 770 vs 180 MB/s a core), and a small query decompresses 64 KiB, not 512. A frame that
# compresses better than that sends the next back to FRAME_BYTES at the level asked for
# (plain text: 512 KiB frames at level 3 are within 2.4% of the whole file through zstd -3, 256 KiB
# within 4.6%, level 1 within 7.6-9.8%; DNS-like 3.1%).
INCOMPRESSIBLE = 1.15
FAST_LEVEL = -1
FRAMES_KEPT = 16  # frames an open source keeps decompressed
FETCH_BYTES = 8 << 20  # compressed bytes one planned fetch brings, at most
MERGE_GAP = 1 << 16  # planned frames this near (compressed bytes between them) are fetched in one read


class CompressedDamage(CaptureError):
    """A compressed capture whose frames or seek table cannot be right (cut short, corrupted)."""


@dataclass(frozen=True)
class SeekTable:
    """Where each frame is: its start in the compressed file and in the capture, and its sizes."""

    c_start: np.ndarray  # int64
    c_size: np.ndarray
    d_start: np.ndarray
    d_size: np.ndarray
    total: int  # the capture's length

    def frame_of(self, offset: int) -> int:
        return bisect_right(self._starts, offset) - 1

    @property
    def _starts(self) -> list[int]:
        return self.lists[2]

    @property
    def lists(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """(c_start, c_size, d_start, d_size) as lists: read one frame at a time, a list's item costs
        a tenth of a numpy scalar's."""
        found = self.__dict__.get("_lists")
        if found is None:
            found = (self.c_start.tolist(), self.c_size.tolist(), self.d_start.tolist(), self.d_size.tolist())
            object.__setattr__(self, "_lists", found)
        return found


def read_seek_table(source: ByteSource, name: str) -> SeekTable:
    """The seek table at the end of ``source``; CompressedDamage when it is missing or disagrees with the file."""
    size = source.size()
    footer = source.read(size - FOOTER.size, FOOTER.size) if size >= FOOTER.size + 8 else b""
    if len(footer) < FOOTER.size:
        raise CompressedDamage(name, max(0, size), "no zstd seek table (the file is cut short)")
    frames, descriptor, magic = FOOTER.unpack(footer)
    if magic != SEEKABLE_MAGIC:
        raise CompressedDamage(name, size - FOOTER.size, "no zstd seek table (the file is cut short?)")
    width = ENTRY.size + (4 if descriptor & CHECKSUM_FLAG else 0)
    table_size = 8 + frames * width + FOOTER.size
    if table_size > size:
        raise CompressedDamage(name, 0, "a zstd seek table longer than its file")
    raw = source.read(size - table_size, table_size)
    skip_magic, frame_size = struct.unpack_from("<II", raw)
    if skip_magic != SKIPPABLE_MAGIC or frame_size != table_size - 8:
        raise CompressedDamage(name, size - table_size, "a zstd seek table without its skippable frame")
    entries = np.frombuffer(raw, dtype="<u4", count=frames * width // 4, offset=8).reshape(frames, width // 4)
    c_size = entries[:, 0].astype(np.int64)
    d_size = entries[:, 1].astype(np.int64)
    c_start = np.cumsum(c_size) - c_size
    d_start = np.cumsum(d_size) - d_size
    if int(c_size.sum()) + table_size != size:
        raise CompressedDamage(name, 0, "the zstd seek table disagrees with the file's size")
    if np.any(d_size > MAX_FRAME):
        raise CompressedDamage(name, 0, "a zstd seek table naming an impossible frame")
    return SeekTable(c_start, c_size, d_start, d_size, int(d_size.sum()))


_TABLES: OrderedDict[tuple, SeekTable] = OrderedDict()
_TABLES_LOCK = threading.Lock()
TABLES_KEPT = 4096  # seek tables (and heads) kept by the process, keyed by their file's identity
HEAD_BYTES = 4096  # the capture's first bytes kept with its seek table: a pcap header, pcapng's first blocks
_HEADS: OrderedDict[tuple, bytes] = OrderedDict()


def cached_seek_table(source: ByteSource) -> SeekTable:
    """``read_seek_table``, kept while the file is the same (its identity): opening a file again reads nothing."""
    key = (source.name, *source.identity())
    with _TABLES_LOCK:
        table = _TABLES.get(key)
        if table is not None:
            _TABLES.move_to_end(key)
            return table
    table = read_seek_table(source, source.name)
    with _TABLES_LOCK:
        _TABLES[key] = table
        while len(_TABLES) > TABLES_KEPT:
            _TABLES.popitem(last=False)
    return table


_LOCAL = threading.local()


def _decompressor():
    """The thread's zstd decompressor: making one costs ~30 us, a small query's decompression ~25."""
    dctx = getattr(_LOCAL, "dctx", None)
    if dctx is None:
        import zstandard

        dctx = _LOCAL.dctx = zstandard.ZstdDecompressor()
    return dctx


class SeekableZstd:
    """A zstd seekable capture read at offsets of the decompressed capture (a ``ByteSource``).

    ``head``: the capture's first bytes when known already (an archive record keeps them), read
    without fetching the first frame. ``shared``: the frames it decompresses are kept for the
    process as well (up to ``SHARED_BYTES``, the least recently used dropped first), so the next
    answer needing them fetches nothing (an archived object, where each fetch is a request).
    """

    def __init__(
        self, inner: ByteSource, table: SeekTable | None = None, head: bytes = b"", shared: bool = False
    ):
        import zstandard

        self.inner = inner
        try:
            self._key = (inner.name, *inner.identity())
            self.table = table if table is not None else cached_seek_table(inner)
        except BaseException:
            inner.close()
            raise
        # the capture's first bytes (its file header), kept by the process: reading the header of a
        # file opened again decompresses nothing
        self.head = head or _HEADS.get(self._key, b"")
        self._dctx = _decompressor()
        self._error = zstandard.ZstdError
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self._planned: list[int] = []  # frames an answer will read, ascending
        self._shared = shared  # frames are kept for the process too (SHARED_BYTES; an archived object's)
        self.frames_read = 0  # frames fetched from the source below and decompressed
        self.bytes_fetched = 0

    @property
    def name(self) -> str:
        return self.inner.name

    def size(self) -> int:
        return self.table.total

    def identity(self) -> tuple:
        return self.inner.identity()

    def fileno(self) -> int | None:
        return None

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def close(self) -> None:
        self._frames.clear()
        self.inner.close()

    def plan(self, offsets: Iterable[int] | np.ndarray) -> None:
        """The records an answer will read (ascending offsets): their frames are fetched together."""
        at = np.asarray(offsets, dtype=np.int64)
        if not len(at):
            return
        frames = np.searchsorted(self.table.d_start, at, side="right") - 1
        frames = frames[frames >= 0]
        if len(frames) > 1:  # ascending: each frame once
            frames = frames[np.concatenate(([True], frames[1:] != frames[:-1]))]
        self._planned = planned = frames.tolist()
        # The first frames now, as many as are kept: a damaged one is met before the answer begins.
        for frame in planned[:FRAMES_KEPT]:
            self._frame(frame)

    def read(self, offset: int, size: int) -> bytes:
        table = self.table
        end = min(offset + size, table.total)
        if offset >= end:
            return b""
        if end <= len(self.head):
            return self.head[offset:end]
        first, last = table.frame_of(offset), table.frame_of(end - 1)
        d_start = table.lists[2]
        if first == last:
            start = d_start[first]
            return self._frame(first)[offset - start : end - start]
        parts = []
        for i in range(first, last + 1):
            start = d_start[i]
            parts.append(memoryview(self._frame(i))[max(0, offset - start) : end - start])
        return b"".join(parts)

    def readinto(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` with the bytes at ``offset`` (fewer at the end): ``read`` without its copies."""
        table = self.table
        end = min(offset + len(view), table.total)
        if end <= len(self.head):
            view[: end - offset] = self.head[offset:end]
            return max(0, end - offset)
        at = offset
        d_start = table.lists[2]
        while at < end:
            i = bisect_right(d_start, at) - 1
            start = d_start[i]
            data = self._frame(i)
            stop = min(end, start + len(data))
            view[at - offset : stop - offset] = memoryview(data)[at - start : stop - start]
            at = stop
        return max(0, end - offset)

    def _frame(self, i: int) -> bytes:
        data = self._frames.get(i)
        if data is not None:
            self._frames.move_to_end(i)
            return data
        if self._shared:
            data = _shared_frame((self._key, i))
            if data is not None:
                self._keep(i, data)
                return data
        for group in self._fetch_groups(i):
            self._fetch(group)
        return self._frames[i]

    def _fetch_groups(self, i: int) -> list[list[int]]:
        """The frames to fetch with ``i``: the planned ones from it on, up to FETCH_BYTES, nearby ones grouped."""
        planned = self._planned
        k = bisect_right(planned, i) if planned else 0
        c_start, c_size = self.table.lists[:2]
        groups, budget = [[i]], c_size[i]
        limit = max(FRAMES_KEPT - 1, 1)
        for frame in planned[k : k + limit]:
            if frame in self._frames or (self._shared and (self._key, frame) in _SHARED):
                continue
            budget += c_size[frame]
            if budget > FETCH_BYTES:
                break
            last = groups[-1][-1]
            if c_start[frame] - (c_start[last] + c_size[last]) <= MERGE_GAP:
                groups[-1].append(frame)
            else:
                groups.append([frame])
        return groups

    def _fetch(self, frames: list[int]) -> None:
        """Read frames ``frames`` (ascending) from the source below, in one read, and decompress each."""
        c_start, c_size, d_start, d_size = self.table.lists
        first, last = frames[0], frames[-1]
        base = c_start[first]
        length = c_start[last] + c_size[last] - base
        raw = memoryview(self.inner.read(base, length))  # frames sliced without copies
        self.bytes_fetched += len(raw)
        for i in frames:
            at, size, want = c_start[i] - base, c_size[i], d_size[i]
            chunk = raw[at : at + size]
            offset = d_start[i]
            if len(chunk) < size:
                raise CompressedDamage(self.name, offset, f"compressed frame {i} is cut short")
            try:
                data = self._dctx.decompress(chunk, max_output_size=want)
            except self._error as exc:
                raise CompressedDamage(
                    self.name, offset, f"compressed frame {i} is damaged ({exc})"
                ) from None
            if len(data) != want:
                raise CompressedDamage(
                    self.name, offset, f"compressed frame {i} holds other than its table says"
                )
            self.frames_read += 1
            self._keep(i, data)
            if self._shared:
                _share_frame((self._key, i), data)
            if i == 0 and not self.head:
                self.head = data[:HEAD_BYTES]
                with _TABLES_LOCK:
                    _HEADS[self._key] = self.head
                    while len(_HEADS) > TABLES_KEPT:
                        _HEADS.popitem(last=False)

    def _keep(self, i: int, data: bytes) -> None:
        self._frames[i] = data
        while len(self._frames) > FRAMES_KEPT:
            self._frames.popitem(last=False)


SHARED_BYTES = 64 << 20  # decompressed frames of archived objects a process keeps across answers
_SHARED: OrderedDict[tuple, bytes] = OrderedDict()
_shared_size = 0


def _shared_frame(key: tuple) -> bytes | None:
    with _TABLES_LOCK:
        data = _SHARED.get(key)
        if data is not None:
            _SHARED.move_to_end(key)
        return data


def _share_frame(key: tuple, data: bytes) -> None:
    global _shared_size
    with _TABLES_LOCK:
        if key in _SHARED or len(data) > SHARED_BYTES // 4:
            return
        _SHARED[key] = data
        _shared_size += len(data)
        while _shared_size > SHARED_BYTES:
            _, dropped = _SHARED.popitem(last=False)
            _shared_size -= len(dropped)


def forget_shared_frames() -> None:
    """Drop the frames kept for the process (tests and benchmarks measuring a first fetch)."""
    global _shared_size
    with _TABLES_LOCK:
        _SHARED.clear()
        _shared_size = 0


# ---------------------------------------------------------------- writing


def next_cut(starts: np.ndarray, at: int, size: int, want: int) -> int:
    """Where the frame starting at ``at`` ends: the first record start ``want`` bytes on (``size`` at
    most); past the last record (a damaged tail, or the last record's end) by size alone."""
    target = at + want
    if target >= size:
        return size
    k = int(np.searchsorted(starts, target))
    if k < len(starts):
        return int(starts[k])
    if not len(starts) or target > int(starts[-1]) + want:
        return target
    return min(size, int(starts[-1]) + want)


def write_seekable(
    read: ByteSource,
    out: BinaryIO,
    starts: np.ndarray,
    level: int = LEVEL,
    frame_bytes: int = FRAME_BYTES,
) -> tuple[int, int]:
    """Write the capture ``read`` to ``out`` in the seekable format, frames cut at record ``starts``
    (ascending offsets); (bytes written, frames).

    Each frame's size and level follow how well the frame before it compressed: after one that
    compressed better than ``INCOMPRESSIBLE``, ``frame_bytes`` at ``level`` (compressible traffic
    keeps its ratio within a few percent of the whole file's); after one that did not (encrypted
    payloads), ``SMALL_FRAME_BYTES`` at ``FAST_LEVEL``: the ratio hardly moves, compression is 3-4x
    faster, and a small query decompresses an eighth of the bytes.
    """
    import zstandard

    size = read.size()
    starts = np.asarray(starts, dtype=np.int64)
    asked = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    fast = asked
    if level > FAST_LEVEL:
        fast = zstandard.ZstdCompressor(level=FAST_LEVEL, write_checksum=True, write_content_size=True)
    small = min(SMALL_FRAME_BYTES, frame_bytes)
    cctx, want = asked, frame_bytes
    entries = bytearray()
    written = frames = a = 0
    while a < size:
        b = next_cut(starts, a, size, want)
        data = read.read(a, b - a)
        if len(data) != b - a:
            raise CaptureError(read.name, a + len(data), "the capture shrank while it was compressed")
        frame = cctx.compress(data)
        # the next frame's level and size, by how well this one compressed (a link's mix changes slowly)
        if len(frame) * INCOMPRESSIBLE > len(data):
            cctx, want = fast, small
        else:
            cctx, want = asked, frame_bytes
        out.write(frame)
        written += len(frame)
        frames += 1
        entries += ENTRY.pack(len(frame), b - a)
        a = b
    table = struct.pack("<II", SKIPPABLE_MAGIC, len(entries) + FOOTER.size) + entries
    table += FOOTER.pack(frames, 0, SEEKABLE_MAGIC)
    out.write(table)
    return written + len(table), frames
