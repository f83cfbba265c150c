"""Where a capture's bytes come from: one small interface every reader of capture bytes goes through.

A ``ByteSource`` reads N bytes at an offset, tells its length and an identity for caching; the
readers of ``engine.formats`` (and everything above them: every read path, damage handling,
``/flows`` over unindexed files, the merge) read through it and never learn where bytes live.

- ``LocalFile``: a capture on the local disk, read with ``pread``. It alone offers ``fileno()``, the
  local-file capability the bulk path's ``preadv`` and the index build's ``mmap`` use as a fast path;
  every other source answers None there and is read with ``read``.
- ``engine.formats.seekable.SeekableZstd``: a zstd seekable file (``<capture>.zst``), its offsets
  those of the decompressed capture.
- an archived capture (``<capture>.archived``, a record of the object holding it), opened by the
  opener the archive registers (``register_opener``).

A capture has one name (``<prefix>.<epoch>``, its index ``<name>.idx``) and lives in one of these
places at a time; ``capture_name`` strips what the place adds to the name.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

ZSTD_SUFFIX = ".zst"
ARCHIVED_SUFFIX = ".archived"
TIER_SUFFIXES = (ZSTD_SUFFIX, ARCHIVED_SUFFIX)


class ByteSource(Protocol):
    """Bytes of one capture, read at offsets."""

    @property
    def name(self) -> str:
        """What a message names the capture by (its path)."""
        ...

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset``; fewer only at the end of the capture."""
        ...

    def size(self) -> int:
        """The capture's length now (a local file still being written grows)."""
        ...

    def identity(self) -> tuple:
        """What changes when the bytes may have changed (for caches keyed by capture)."""
        ...

    def fileno(self) -> int | None:
        """The local file's descriptor, for a local-file-only fast path; None for any other source."""
        ...

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


class LocalFile:
    """A capture file on the local disk, read with ``pread``."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        if stat.S_ISDIR(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise IsADirectoryError(errno.EISDIR, "Is a directory", self.path)

    @property
    def name(self) -> str:
        return self.path

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def identity(self) -> tuple:
        st = os.fstat(self._fd)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def fileno(self) -> int | None:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


Opener = Callable[[str], ByteSource]
_OPENERS: dict[str, Opener] = {}


def register_opener(suffix: str, opener: Opener) -> None:
    """Open captures whose file name ends in ``suffix`` with ``opener(path)`` (the archive's records)."""
    _OPENERS[suffix] = opener


def open_source(path: str | os.PathLike) -> ByteSource:
    """The byte source of the capture stored at ``path``, chosen by the name's ending."""
    path = os.fspath(path)
    if path.endswith(ZSTD_SUFFIX):
        from .seekable import SeekableZstd

        return SeekableZstd(LocalFile(path))
    for suffix, opener in _OPENERS.items():
        if path.endswith(suffix):
            return opener(path)
    if path.endswith(ARCHIVED_SUFFIX):
        raise OSError(f"{path}: an archived capture, and no archive is configured to read it")
    return LocalFile(path)


def capture_name(path: str | os.PathLike) -> str:
    """The capture's own path (``<prefix>.<epoch>``) for a path in any tier (``.zst``, ``.archived``)."""
    path = os.fspath(path)
    for suffix in TIER_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def tier_of(path: str | os.PathLike) -> str:
    """``raw``, ``compressed`` or ``archived``: where the capture at ``path`` lives."""
    name = Path(path).name
    if name.endswith(ZSTD_SUFFIX):
        return "compressed"
    if name.endswith(ARCHIVED_SUFFIX):
        return "archived"
    return "raw"


def capture_length(path: str | os.PathLike) -> int:
    """The length of the capture stored at ``path`` (decompressed); no archive request for an archived one."""
    path = os.fspath(path)
    if path.endswith(ARCHIVED_SUFFIX):
        from .archived import ArchiveRecord

        return ArchiveRecord.load(path).capture_size
    if not path.endswith(ZSTD_SUFFIX):
        return os.stat(path).st_size
    source = open_source(path)
    try:
        return source.size()
    finally:
        source.close()
