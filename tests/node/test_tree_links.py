"""Symbolic links in the filer tree: queries and retention treat them alike, neither following them."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest
from django.core.management import CommandError

from node import store
from tests.node.filing import NS, filed_files, window_paths, write_capture
from tests.node.test_filer import fill_hours, runfiler


def window_files(filer_dir: Path, capture_dir: Path, epoch: int) -> list[Path]:
    """The files a query over the minute from ``epoch`` on is answered from."""
    return window_paths(
        epoch * NS, (epoch + 60) * NS, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=True
    )


def link_hour(hour: Path, outside: Path) -> None:
    """Move a filed hour directory's contents outside the tree and leave a symbolic link in its place."""
    shutil.move(hour, outside)
    hour.symlink_to(outside, target_is_directory=True)


def test_a_linked_hour_directory_is_neither_served_nor_deleted_and_each_pass_warns_once(dirs, caplog):
    capture_dir, filer_dir = dirs
    this_hour = int(time.time() // 3600 * 3600)
    hours = fill_hours(filer_dir, this_hour - 5 * 3600, 6)
    outside = filer_dir.parent / "elsewhere"
    link_hour(hours[1], outside)
    first_epoch = this_hour - 4 * 3600
    assert window_files(filer_dir, capture_dir, this_hour - 5 * 3600)  # a real hour is served
    caplog.set_level(logging.INFO, logger="node.filer")

    assert window_files(filer_dir, capture_dir, first_epoch) == []
    runfiler(capture_dir, filer_dir, "--max-age", "3")

    assert [h.exists() for h in hours] == [False, True, True, True, True, True]
    assert hours[1].is_symlink() and sorted(p.name for p in outside.iterdir()) == [
        f"pcap.{first_epoch}",
        f"pcap.{first_epoch}.idx",
        f"pcap.{first_epoch + 600}",
        f"pcap.{first_epoch + 600}.idx",
    ]
    warnings = [m for m in caplog.messages if "symbolic links in the filer tree" in m]
    assert len(warnings) == 1 and str(hours[1]) in warnings[0]


def test_a_linked_day_directory_is_not_served_either(dirs):
    capture_dir, filer_dir = dirs
    epoch = int(time.time() // 3600 * 3600) - 3600
    (hour,) = fill_hours(filer_dir, epoch, 1)
    assert window_files(filer_dir, capture_dir, epoch)
    link_hour(hour.parent, filer_dir.parent / "elsewhere")

    assert window_files(filer_dir, capture_dir, epoch) == []


def test_the_filer_files_nothing_into_a_linked_hour_directory(dirs, caplog):
    capture_dir, filer_dir = dirs
    epoch = int(time.time() // 3600 * 3600) - 3600
    outside = filer_dir.parent / "elsewhere"
    outside.mkdir()
    hour = store.hour_dir(filer_dir, epoch, True)
    hour.parent.mkdir(parents=True)
    hour.symlink_to(outside, target_is_directory=True)
    write_capture(capture_dir, epoch)
    write_capture(capture_dir, epoch + 60)

    with pytest.raises(CommandError, match="1 capture files could not be filed"):
        runfiler(capture_dir, filer_dir)

    assert (capture_dir / f"pcap.{epoch}").exists() and list(outside.iterdir()) == []
    assert filed_files(filer_dir) == {}
    assert any(f"{hour} is a symbolic link in the filer tree" in m for m in caplog.messages)
