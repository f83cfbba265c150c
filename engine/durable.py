"""Durable file operations and locks, standard library only: files appear whole or not at all.

The atomic-write recipe (``atomic_write``): write under a temporary dot-name in the same directory
(``.<name>.<pid>.tmp`` unless told otherwise), flush and fsync it, ``os.replace`` it onto its name
(or ``os.link`` it, when the first writer must win), then fsync the directory so the new entry
survives a crash too. A crash at any point leaves the old file or the new one, never a part, plus
at worst the temporary file, whose name says it can be removed.

Locks (``flock``) are ``fcntl.flock`` on a lock file that is never unlinked: the kernel releases
them when their process dies, so ``kill -9`` leaves nothing that blocks the next run. A process
forked while a lock is held does not hold it (its copy of the lock's descriptor is closed in the
child), so a worker outliving its parent, however briefly, never blocks the next run either.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
# Descriptors of the locks this process holds (fd -> pid of the holder), to close in a forked child.
_held: dict[int, int] = {}


class LockBusy(Exception):
    """Another process holds the lock (and we were told not to wait)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"lock {path} is held")
        self.path = path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the entries of directory ``path`` (names created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike) -> None:
    """``mkdir -p`` whose new entries survive a crash (each new directory's parent is fsynced)."""
    path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_dir(directory.parent)


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name ``atomic_write`` writes ``path`` under: ``.<name>.<pid>.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


@contextmanager
def atomic_write(
    path: str | os.PathLike, *, mode: int = 0o644, exclusive: bool = False, temp: Path | None = None
) -> Iterator[BinaryIO]:
    """Write ``path`` atomically through a temporary file (the recipe in the module docstring).

    The block writes to the binary file it is given; on leaving the block, the file is fsynced and
    put in place, and the directory fsynced. ``exclusive``: the first writer wins, FileExistsError
    if ``path`` exists by then. An exception in the block (or in putting it in place) removes the
    temporary file and leaves ``path`` as it was. ``temp`` names the temporary file (default
    ``temp_path(path)``); it must be in ``path``'s directory.
    """
    path = Path(path)
    tmp = temp_path(path) if temp is None else Path(temp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            os.link(tmp, path)  # FileExistsError if another writer was first
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def flock(path: str | os.PathLike, *, wait: bool, mode: int = 0o600) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing, never removed); LockBusy if held.

    The file holds the holder's pid, for an operator who wonders who has it. Children do not share
    it: ``os.O_CLOEXEC`` keeps exec'd ones out, ``_forget_locks_in_child`` forked ones.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    _held[fd] = os.getpid()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(Path(path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if _held.pop(fd, None) == os.getpid():
            os.close(fd)  # closing releases the lock


def _forget_locks_in_child() -> None:
    """Close a forked child's copies of its parent's lock descriptors (the parent keeps its locks)."""
    for fd in list(_held):
        del _held[fd]
        os.close(fd)


os.register_at_fork(after_in_child=_forget_locks_in_child)
