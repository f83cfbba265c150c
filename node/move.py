"""Moving a capture file into its hour directory so that a crash leaves it in one place or both.

On one file system the move is an ``os.replace``. Across file systems the capture is copied to
``.<name>.filing`` in the destination, fsynced, given the source's times, renamed to its name
(engine/durable.py), and only then removed from the capture directory; a rerun that finds both
compares them (``same_content``) and only removes the source (node/filer.py).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from engine import durable
from engine.durable import fsync_dir
from node.faults import crash_point

COPY_SUFFIX = ".filing"
_CHUNK = 1 << 20


def same_content(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (size first, then every chunk)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(_CHUNK)
            if chunk != fb.read(_CHUNK):
                return False
            if not chunk:
                return True


def copy_durably(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` (not existing) through ``.<name>.filing``: fsynced, times kept."""
    tmp = dest.with_name(f".{dest.name}{COPY_SUFFIX}")
    with open(src, "rb") as fin, durable.atomic_write(dest, temp=tmp) as fout:
        first = True
        while chunk := fin.read(_CHUNK):
            fout.write(chunk)
            if first:
                fout.flush()
                crash_point("copying")
                first = False
        fout.flush()
        shutil.copystat(src, tmp)  # mtime is part of a file's span when it has no index
        crash_point("copied")


def move_capture(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``: a rename on one file system, else copy, rename, then remove the source."""
    try:
        os.replace(src, dest)  # dest does not exist: checked under the tree lock
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        copy_durably(src, dest)
        crash_point("placed")
        os.unlink(src)
    else:
        fsync_dir(dest.parent)
    fsync_dir(src.parent)
