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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .durable import atomic_write
from .formats import CaptureError, LocalFile, PcapCapture, PcapngCapture, open_capture
from .formats.seekable import FRAME_BYTES, LEVEL, write_seekable
from .formats.source import ZSTD_SUFFIX


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
            from .recordtable import walk_pcapng

            return walk_pcapng(cap).offset
        assert isinstance(cap, PcapCapture)
        size, fd = cap.size(), cap.fileno()
        if size <= 24 or fd is None:
            return np.zeros(0, dtype=np.int64)
        from . import native

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
