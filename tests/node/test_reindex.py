"""`manage.py reindex`: build missing or outdated capture indexes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from engine import durable
from engine.index import INDEX_VERSION, index_is_current, index_path
from node import filer, store
from tests.node.filing import SEED_FIRST, SEED_SECOND, write_capture


class Out:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


def reindex(*args: str) -> str:
    out = Out()
    call_command("reindex", *args, stdout=out)
    return out.text


@pytest.fixture
def tree(tmp_path: Path, settings) -> Path:
    """A filer tree with two filed captures, not indexed yet."""
    settings.PAR_DATA_DIR = tmp_path / "data"
    settings.PAR_DATA_DIR.mkdir()
    settings.PAR_FILER_DIR = tmp_path / "filed"
    settings.PAR_CAPTURE_DIR = tmp_path / "pcap"
    settings.PAR_CAPTURE_DIR.mkdir()
    for epoch in (SEED_FIRST, SEED_SECOND):
        directory = store.hour_dir(settings.PAR_FILER_DIR, epoch, True)
        directory.mkdir(parents=True)
        write_capture(directory, epoch)
    return settings.PAR_FILER_DIR


def captures(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("pcap.*") if not p.name.endswith((".idx", ".summary")))


def test_it_builds_every_missing_index_of_the_filer_tree(tree):
    out = reindex()

    assert all(index_is_current(p) for p in captures(tree))
    assert out.startswith("Built 2 indexes, 0 already current")


def test_each_rebuilt_index_is_durable_its_directory_fsynced_after_it(tree, monkeypatch):
    fsynced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    reindex("--jobs", "1")  # all in this process, where fsync is watched

    for capture in captures(tree):
        temp = str(capture.parent / f".{capture.name}.idx.")
        index_written = max(i for i, path in enumerate(fsynced) if path.startswith(temp))
        assert str(capture.parent) in fsynced[index_written + 1 :], f"{capture.parent} never fsynced"


def test_it_leaves_current_indexes_alone(tree):
    reindex()
    first = index_path(captures(tree)[0])
    before = first.stat().st_mtime_ns

    out = reindex(str(tree))

    assert first.stat().st_mtime_ns == before
    assert out.startswith("Built 0 indexes, 2 already current")


def test_it_rebuilds_a_damaged_index(tree):
    reindex()
    capture = captures(tree)[0]
    index_path(capture).write_bytes(b"\0" * 64)
    assert not index_is_current(capture)

    out = reindex()

    assert index_is_current(capture)
    assert out.startswith("Built 1 indexes, 1 already current")


def test_it_rebuilds_an_index_of_an_older_version(tree):
    reindex()
    capture = captures(tree)[1]
    with open(index_path(capture), "r+b") as index:
        index.seek(8)  # the version, after the magic
        index.write(struct.pack("<I", INDEX_VERSION - 1))
    assert not index_is_current(capture)

    out = reindex()

    assert index_is_current(capture)
    assert out.startswith("Built 1 indexes, 1 already current")


def test_it_takes_single_files(tree):
    first, second = captures(tree)

    reindex(str(second))

    assert index_is_current(second) and not index_path(first).exists()


def test_a_capture_that_cannot_be_parsed_gets_no_index(tree):
    broken = captures(tree)[0]
    broken.write_bytes(b"garbage")

    out = reindex()

    assert not index_path(broken).exists()
    assert "1 captures cannot be parsed" in out


def test_it_removes_temporary_files_left_by_a_crashed_filer(tree):
    capture = captures(tree)[0]
    copy = capture.with_name(f".{capture.name}.filing")
    copy.write_bytes(capture.read_bytes()[:100])
    index = capture.with_name(f".{capture.name}.idx.4242.tmp")
    index.write_bytes(b"PARINDEX")
    other = capture.with_name(".keep-me")
    other.write_bytes(b"not ours")

    reindex()

    assert not copy.exists() and not index.exists()
    assert other.exists()


def test_it_skips_the_capture_directory(tree, settings):
    live = write_capture(settings.PAR_CAPTURE_DIR, SEED_SECOND + 60)

    reindex(str(settings.PAR_CAPTURE_DIR))

    assert not index_path(live).exists()


def test_a_path_that_is_no_capture_is_a_clear_error(tree, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for path in (tmp_path / "missing", tmp_path / "notes.txt"):
        with pytest.raises(CommandError, match="neither a directory nor a capture file"):
            reindex(str(path))


def test_a_lock_that_cannot_be_taken_is_a_clear_error(tree, settings):
    (settings.PAR_DATA_DIR / filer.TREE_LOCK).mkdir()  # in the way of the lock file
    with pytest.raises(CommandError, match=f"Is a directory: .*{filer.TREE_LOCK}"):
        reindex()


def test_a_lock_the_user_may_not_open_is_a_clear_error(tree, settings, monkeypatch):
    lock = settings.PAR_DATA_DIR / filer.TREE_LOCK

    def refused(path, *, wait):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(durable, "flock", refused)  # as for a lock file of another user, even as root
    with pytest.raises(CommandError, match=f"Permission denied: '{lock}'"):
        reindex()
