"""Compressing a capture into the zstd seekable format, its frames cut at record starts.

``compress_capture(src, dest)`` writes ``dest`` (``<capture>.zst``) atomically: the records' starts
are found by the same walk the index build does (compiled for classic pcap, block by block for
pcapng; a damaged capture's bytes after its damage go into frames cut by size alone), the frames
cut at record starts (``FRAME_BYTES`` apart, or ``SMALL_FRAME_BYTES`` where the traffic does not
compress), each compressed on its own
(``engine.formats.seekable``). The compressed file decompresses to ``src`` byte for byte, so the
capture's index answers for both.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .durable import atomic_write
from .formats import CaptureError, LocalFile, PcapCapture, PcapngCapture, open_capture
from .formats.seekable import ENTRY, FOOTER, SEEKABLE_MAGIC, SKIPPABLE_MAGIC
from .formats.source import ZSTD_SUFFIX, ByteSource

# decompressed bytes a frame of compressible traffic holds (whole records: a little more)
FRAME_BYTES = 1 << 19
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


@dataclass(frozen=True)
class Compressed:
    raw_bytes: int
    compressed_bytes: int
    frames: int


def compressed_path(capture: str | os.PathLike) -> Path:
    """Where the compressed copy of ``capture`` goes: ``<capture>.zst`` beside it."""
    return Path(os.fspath(capture) + ZSTD_SUFFIX)


def record_offsets(capture: str | os.PathLike) -> np.ndarray:
    """Where the records of ``capture`` start (those before any damage); empty when it cannot be read."""
    try:
        cap = open_capture(os.fspath(capture))
    except (CaptureError, OSError):
        return np.zeros(0, dtype=np.int64)
    with cap:
        if isinstance(cap, PcapngCapture):
            from .dissection.recordtable import walk_pcapng

            return walk_pcapng(cap).offset
        assert isinstance(cap, PcapCapture)
        size, fd = cap.size(), cap.fileno()
        if size <= 24 or fd is None:
            return np.zeros(0, dtype=np.int64)
        from .dissection import native

        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        try:
            buf = np.frombuffer(mm, dtype=np.uint8, count=size)
            rec, _ = native.record_headers(buf, 24, cap.order == ">")
            del buf
        finally:
            # numba compiling the walk (its first run, no cache) may keep a view of the mapping a
            # while: it is unmapped when that goes
            with contextlib.suppress(BufferError):
                mm.close()
        return rec[rec < size]


def compress_capture(
    src: str | os.PathLike,
    dest: str | os.PathLike | None = None,
    *,
    level: int = LEVEL,
    frame_bytes: int = FRAME_BYTES,
    temp: Path | None = None,
) -> Compressed:
    """Write ``src`` to ``dest`` (default ``<src>.zst``) in the zstd seekable format, atomically."""
    dest = Path(dest) if dest is not None else compressed_path(src)
    source = LocalFile(src)
    try:
        size = source.size()
        starts = record_offsets(src)
        with atomic_write(dest, temp=temp) as out:
            written, frames = write_seekable(source, out, starts, level, frame_bytes)
    finally:
        source.close()
    return Compressed(size, written, frames)


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
