"""Durable file operations: a file appears whole or not at all, and its directory entry is durable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import durable


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """The paths fsynced from now on, in order."""
    paths: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def test_atomic_write_puts_the_file_in_place_and_fsyncs_it_then_its_directory(tmp_path, fsynced):
    target = tmp_path / "data"
    with durable.atomic_write(target, mode=0o600) as out:
        out.write(b"new")
        assert not target.exists()  # nothing under the name before the write is complete

    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600
    assert fsynced == [str(durable.temp_path(target)), str(tmp_path)]
    assert os.listdir(tmp_path) == ["data"]


def test_atomic_write_failing_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "data"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), durable.atomic_write(target) as out:
        out.write(b"half")
        raise RuntimeError("disk full")

    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data"]


def test_an_exclusive_atomic_write_lets_the_first_writer_win(tmp_path):
    target = tmp_path / "secret"
    target.write_bytes(b"first")
    with pytest.raises(FileExistsError), durable.atomic_write(target, exclusive=True) as out:
        out.write(b"second")

    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["secret"]


def test_make_dirs_fsyncs_the_parent_of_every_new_directory(tmp_path, fsynced):
    durable.make_dirs(tmp_path / "a" / "b")

    assert (tmp_path / "a" / "b").is_dir()
    assert fsynced == [str(tmp_path), str(tmp_path / "a")]


def test_a_held_lock_is_busy_for_another_process_and_free_once_its_holder_dies(tmp_path):
    lock = tmp_path / "some.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from engine import durable
                with durable.flock({str(lock)!r}, wait=False):
                    print("held", flush=True)
                    time.sleep(60)
            """),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert lock.read_text() == f"{holder.pid}\n"
        with pytest.raises(durable.LockBusy, match="is held"), durable.flock(lock, wait=False):
            pass
    finally:
        holder.kill()
        holder.wait()
    with durable.flock(lock, wait=False):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert lock.exists()  # never unlinked


def test_a_child_forked_while_a_lock_is_held_does_not_hold_it(tmp_path):
    lock = tmp_path / "some.lock"
    with durable.flock(lock, wait=False):
        read_end, write_end = os.pipe()
        started_r, started_w = os.pipe()
        child = os.fork()
        if child == 0:  # lives on after the parent lets go, as a worker of a killed filer would
            os.write(started_w, b"!")
            os.read(read_end, 1)
            os._exit(0)
        assert os.read(started_r, 1) == b"!"
    try:
        with durable.flock(lock, wait=False):  # another open file of the lock: the child's copy counts
            pass
    finally:
        os.write(write_end, b"!")
        os.waitpid(child, 0)
        for fd in (read_end, write_end, started_r, started_w):
            os.close(fd)
