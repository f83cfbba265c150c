"""The capture tree: capture file names, hour directories, which files hold a time window."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from engine.index import build_index, index_path
from node import store
from tests.node.filing import NS, SEED_FIRST, SEED_SECOND, window_paths, write_capture


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    return capture_dir, filer_dir


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch):
    """Run with the process's local time zone set to New York (UTC-4 in May)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def file_into_tree(capture: Path, filer_dir: Path, utc: bool = True, index: bool = True) -> Path:
    """File a capture the way the filer leaves it: in its hour directory, with its index."""
    epoch = store.capture_epoch(capture, "pcap")
    dest_dir = store.hour_dir(filer_dir, epoch, utc)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / capture.name
    os.replace(capture, dest)
    if index:
        build_index(dest)
    return dest


def test_capture_epoch_reads_only_prefix_dot_epoch_files(dirs):
    capture_dir, _ = dirs
    write_capture(capture_dir, SEED_FIRST)
    for name in (
        ".pcap.1432321102",
        "pcap.1432321103.idx",
        "other.1432321104",
        "pcap.12a",
        "pcap.",
        "pcap.١٢٣",
    ):
        (capture_dir / name).write_bytes(b"x")
    (capture_dir / "pcap.1432321105").mkdir()
    (capture_dir / "pcap.1432321106").symlink_to(capture_dir / f"pcap.{SEED_FIRST}")

    assert store.capture_epoch(capture_dir / f"pcap.{SEED_FIRST}", "pcap") == SEED_FIRST
    assert [
        store.capture_epoch(p, "pcap")
        for p in sorted(capture_dir.iterdir())
        if p.name != f"pcap.{SEED_FIRST}"
    ] == [None] * 8
    assert store.capture_epoch(capture_dir / f"pcap.{SEED_FIRST}", "daemon") is None
    assert store.capture_epoch(capture_dir / "pcap.999", "pcap") is None  # no such file


def test_capture_files_are_sorted_by_epoch_not_by_name(dirs):
    capture_dir, _ = dirs
    for epoch in (1000, 999, 10001):
        (capture_dir / f"pcap.{epoch}").write_bytes(b"")
    (capture_dir / ".pcap.5").write_bytes(b"")

    assert [p.name for p in store.capture_files(capture_dir, "pcap")] == [
        "pcap.999",
        "pcap.1000",
        "pcap.10001",
    ]
    assert [p.name for p in store.capture_dir_files(capture_dir, "pcap").pending] == ["pcap.999", "pcap.1000"]


def test_the_only_capture_file_is_not_pending(dirs):
    capture_dir, _ = dirs
    assert store.capture_dir_files(capture_dir, "pcap").pending == []
    (capture_dir / "pcap.5").write_bytes(b"")
    assert store.capture_dir_files(capture_dir, "pcap").pending == []


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12", "UTC"])
def test_every_name_epoch_has_an_hour_directory_in_any_zone(tmp_path, monkeypatch, zone):
    # 253402300000 is 9999-12-31 23:46 UTC: in a zone east of UTC its hour is in the year 10000.
    assert store.name_epoch("pcap.253402300000", "pcap") is None
    latest = store.name_epoch("pcap.253370764800", "pcap")  # 9999-01-01 00:00 UTC
    assert latest == 253370764800
    assert store.name_epoch(f"pcap.{latest + 1}", "pcap") is None
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert store.hour_dir(tmp_path, latest, utc=False).parts[-4] in ("9998", "9999")
        assert store.hour_dir(tmp_path, latest, utc=True) == tmp_path / "9999/01/01/00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_file_named_in_the_future_does_not_make_the_live_file_look_finished(dirs):
    capture_dir, _ = dirs
    now = SEED_SECOND + 30
    for epoch in (SEED_FIRST, SEED_SECOND, now + 3601, now + 86400 * 365):
        (capture_dir / f"pcap.{epoch}").write_bytes(b"")

    listed = store.capture_dir_files(capture_dir, "pcap", now=now)

    assert listed.pending == [capture_dir / f"pcap.{SEED_FIRST}"]
    assert listed.live == capture_dir / f"pcap.{SEED_SECOND}"
    assert [p.name for p in listed.future] == [f"pcap.{now + 3601}", f"pcap.{now + 86400 * 365}"]


def test_a_file_named_up_to_an_hour_ahead_is_the_live_one(dirs):
    # The capture host's clock may run a little ahead of the filer's.
    capture_dir, _ = dirs
    now = SEED_SECOND
    for epoch in (SEED_FIRST, now + 3600):
        (capture_dir / f"pcap.{epoch}").write_bytes(b"")

    listed = store.capture_dir_files(capture_dir, "pcap", now=now)

    assert (listed.pending, listed.live, listed.future) == (
        [capture_dir / f"pcap.{SEED_FIRST}"],
        capture_dir / f"pcap.{now + 3600}",
        [],
    )


def test_hour_dir_is_the_utc_hour_of_the_epoch(tmp_path):
    assert store.hour_dir(tmp_path, SEED_FIRST, utc=True) == tmp_path / "2015/05/22/18"
    assert store.hour_dir(tmp_path, SEED_SECOND, utc=True) == tmp_path / "2015/05/22/21"


def test_hour_dir_in_local_time_follows_the_zone(tmp_path, local_zone):
    assert store.hour_dir(tmp_path, SEED_FIRST, utc=False) == tmp_path / "2015/05/22/14"
    assert store.hour_dir(tmp_path, SEED_FIRST, utc=True) == tmp_path / "2015/05/22/18"


def test_a_window_finds_a_filed_file_that_started_in_the_hour_before(dirs):
    capture_dir, filer_dir = dirs
    epoch = 1432335000  # 2015-05-22 22:50 UTC, runs for 20 minutes into the next hour
    filed = file_into_tree(write_capture(capture_dir, epoch, seconds=1200, pps=1), filer_dir)
    start = (epoch + 900) * NS  # 23:05, an hour directory of its own

    assert window_paths(
        start, start + 60 * NS, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=True
    ) == [filed]
    # After its last packet, it does not cover the window.
    later = (epoch + 1300) * NS
    assert (
        window_paths(
            later, later + 60 * NS, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=True
        )
        == []
    )


def test_a_window_uses_the_index_span_not_the_mtime(dirs):
    capture_dir, filer_dir = dirs
    filed = file_into_tree(write_capture(capture_dir, SEED_FIRST, seconds=10, pps=5), filer_dir)
    os.utime(filed, (SEED_FIRST + 3000, SEED_FIRST + 3000))  # touched long after its last packet
    window = ((SEED_FIRST + 100) * NS, (SEED_FIRST + 200) * NS)

    assert window_paths(*window, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=True) == []
    index_path(filed).unlink()  # no index: the name and mtime are all there is to go by
    assert window_paths(*window, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=True) == [
        filed
    ]


def test_a_window_covering_no_capture_data_finds_nothing(dirs):
    capture_dir, filer_dir = dirs
    file_into_tree(write_capture(capture_dir, SEED_FIRST), filer_dir)
    before = (SEED_FIRST - 7200) * NS

    assert (
        window_paths(
            before, before + 3600 * NS, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=True
        )
        == []
    )


def test_a_window_includes_the_live_file_and_the_unfiled_ones(dirs):
    capture_dir, filer_dir = dirs
    now = int(time.time())
    filed = file_into_tree(write_capture(capture_dir, now - 120, seconds=2), filer_dir)
    waiting = write_capture(capture_dir, now - 60, seconds=2)
    live = write_capture(capture_dir, now - 1, seconds=1)
    os.utime(live)  # still being written: modified just now

    found = window_paths(
        (now - 3600) * NS,
        (now + 5) * NS,
        filer_dir=filer_dir,
        capture_dir=capture_dir,
        prefix="pcap",
        utc=True,
    )
    assert found == [filed, waiting, live]
    recent = window_paths(
        now * NS, (now + 5) * NS, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=True
    )
    assert recent == [live]


def test_a_file_filed_while_the_window_is_listed_is_found_where_it_went(dirs, monkeypatch):
    capture_dir, filer_dir = dirs
    capture = write_capture(capture_dir, SEED_FIRST)
    write_capture(capture_dir, SEED_SECOND)
    hours_between = store.hours_between

    def filer_moves_it_meanwhile(*args, **kwargs):
        if capture.exists():
            file_into_tree(capture, filer_dir)
        return hours_between(*args, **kwargs)

    monkeypatch.setattr(store, "hours_between", filer_moves_it_meanwhile)
    start = SEED_FIRST * NS
    found = window_paths(
        start, start + 10 * NS, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=True
    )
    assert found == [store.hour_dir(filer_dir, SEED_FIRST, True) / capture.name]


def test_a_window_finds_files_filed_in_local_hours(dirs, local_zone):
    capture_dir, filer_dir = dirs
    filed = file_into_tree(write_capture(capture_dir, SEED_FIRST), filer_dir, utc=False)
    assert filed.parent == filer_dir / "2015/05/22/14"
    start = SEED_FIRST * NS

    assert window_paths(
        start, start + NS, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=False
    ) == [filed]


def test_a_window_finds_files_filed_by_the_other_clock(dirs, local_zone):
    capture_dir, filer_dir = dirs
    by_local = file_into_tree(write_capture(capture_dir, SEED_FIRST), filer_dir, utc=False)
    by_utc = file_into_tree(write_capture(capture_dir, SEED_FIRST + 120), filer_dir, utc=True)
    assert by_local.parent != by_utc.parent
    start = SEED_FIRST * NS

    for utc in (True, False):
        found = window_paths(
            start, start + 600 * NS, filer_dir=filer_dir, capture_dir=capture_dir, prefix="pcap", utc=utc
        )
        assert found == [by_local, by_utc]


def test_a_window_skips_other_names_and_missing_directories(tmp_path):
    filer_dir = tmp_path / "filed"
    hour = store.hour_dir(filer_dir, SEED_FIRST, True)
    hour.mkdir(parents=True)
    write_capture(hour, SEED_FIRST)
    shutil.copy(hour / f"pcap.{SEED_FIRST}", hour / f".pcap.{SEED_FIRST}.filing")
    start = SEED_FIRST * NS

    found = window_paths(
        start, start + NS, filer_dir=filer_dir, capture_dir=tmp_path / "gone", prefix="pcap", utc=True
    )
    assert found == [hour / f"pcap.{SEED_FIRST}"]


def test_an_hour_directory_is_listed_once_while_it_does_not_change(dirs, monkeypatch):
    capture_dir, filer_dir = dirs
    filed = file_into_tree(write_capture(capture_dir, SEED_FIRST, seconds=10, pps=5), filer_dir)
    an_hour_ago = time.time() - 3600
    os.utime(filed.parent, (an_hour_ago, an_hour_ago))  # settled: its listing can be kept
    listed = []
    real = store._captures_in
    monkeypatch.setattr(store, "_captures_in", lambda d, p, **k: listed.append(d) or real(d, p, **k))
    window = (SEED_FIRST * NS, (SEED_FIRST + 60) * NS)
    tree = {"filer_dir": filer_dir, "capture_dir": capture_dir, "prefix": "pcap", "utc": True}
    for _ in range(3):
        assert window_paths(*window, **tree) == [filed]
    assert listed.count(filed.parent) == 1

    # A file filed into it changes its mtime: it is listed again and the new file found.
    second = file_into_tree(write_capture(capture_dir, SEED_FIRST + 20, seconds=10, pps=5), filer_dir)
    assert window_paths(*window, **tree) == [filed, second]
    assert listed.count(filed.parent) == 2


def test_a_window_does_not_list_an_unindexed_file_named_after_it(dirs):
    capture_dir, filer_dir = dirs
    later = write_capture(capture_dir, SEED_FIRST + 3600, seconds=10, pps=5)
    write_capture(capture_dir, SEED_FIRST + 7200, seconds=10, pps=5)  # the live one
    window = (SEED_FIRST * NS, (SEED_FIRST + 60) * NS)
    tree = {"filer_dir": filer_dir, "capture_dir": capture_dir, "prefix": "pcap", "utc": True}
    assert later not in window_paths(*window, **tree)
