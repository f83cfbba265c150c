"""The filer: `manage.py runfiler` files every finished capture once, indexed, and survives crashes."""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from engine.index import index_is_current, index_path
from node import filer, filerstats, store
from node.filer import FilerOptions, runner_lock
from tests.node.filing import (
    SEED_FIRST,
    SEED_SECOND,
    filed_files,
    filer_env,
    manage,
    start_manage,
    temp_files,
    tmpfs,
    write_capture,
    write_captures,
)

BASE = 1432321101  # 2015-05-22 18:58:21 UTC


def options(capture_dir: Path, filer_dir: Path, **kwargs) -> FilerOptions:
    return FilerOptions(
        capture_dir=capture_dir, filer_dir=filer_dir, data_dir=filer_dir.parent / "data", **kwargs
    )


def runfiler(capture_dir: Path, filer_dir: Path, *args: str) -> str:
    out = []

    class Out:
        def write(self, text: str) -> None:
            out.append(text)

    call_command(
        "runfiler", "--capture-dir", str(capture_dir), "--filer-dir", str(filer_dir), *args, stdout=Out()
    )
    return "".join(out)


def assert_filed_once(filer_dir: Path, expected: dict[str, bytes], *, utc: bool = True) -> None:
    """Every expected capture is filed exactly once, byte-identical, in its hour, with a current index."""
    filed = filed_files(filer_dir)
    assert sorted(filed) == sorted(expected)
    for name, data in expected.items():
        (path,) = filed[name]
        assert path.parent == store.hour_dir(filer_dir, int(name.split(".")[1]), utc)
        assert path.read_bytes() == data, f"{name} changed while filed"
        assert index_is_current(path), f"{name} has no valid index"


# --- what gets filed, and where ---------------------------------------------------


def test_it_files_all_but_the_newest_capture_like_the_seed(dirs, caplog):
    capture_dir, filer_dir = dirs
    first = write_capture(capture_dir, SEED_FIRST)
    data = first.read_bytes()
    write_capture(capture_dir, SEED_SECOND)
    caplog.set_level(logging.INFO, logger="node.filer")

    summary = runfiler(capture_dir, filer_dir, "--utc")

    assert sorted(p.name for p in capture_dir.iterdir()) == [f"pcap.{SEED_SECOND}"]
    filed = filer_dir / "2015/05/22/18" / f"pcap.{SEED_FIRST}"
    assert filed.read_bytes() == data
    assert index_path(filed).exists() and index_is_current(filed)
    assert f"Processing: pcap.{SEED_FIRST}" in caplog.messages
    assert f"Moving {first} => {filer_dir}/2015/05/22/18/" in caplog.messages
    assert f"Filed 1 files, {len(data)} bytes, 100 packets in " in summary


def test_it_keeps_the_capture_mtime(dirs):
    capture_dir, filer_dir = dirs
    capture = write_capture(capture_dir, SEED_FIRST)
    mtime_ns = capture.stat().st_mtime_ns
    write_capture(capture_dir, SEED_SECOND)

    runfiler(capture_dir, filer_dir)

    assert (filer_dir / "2015/05/22/18" / capture.name).stat().st_mtime_ns == mtime_ns


def test_it_leaves_hidden_files_other_names_and_directories_alone(dirs):
    capture_dir, filer_dir = dirs
    write_capture(capture_dir, SEED_FIRST)
    write_capture(capture_dir, SEED_SECOND)
    others = [".pcap.1432000000", "pcap.1432000001.tmp", "other.1432000002", "pcap"]
    for name in others:
        (capture_dir / name).write_bytes(b"x")
    (capture_dir / "pcap.1432000003").mkdir()

    runfiler(capture_dir, filer_dir)

    left = sorted(p.name for p in capture_dir.iterdir())
    assert left == sorted([*others, "pcap.1432000003", f"pcap.{SEED_SECOND}"])
    assert list(filed_files(filer_dir)) == [f"pcap.{SEED_FIRST}"]


def test_hour_directories_follow_local_time_with_localtime(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    write_captures(capture_dir, [SEED_FIRST, SEED_SECOND])
    env = filer_env(tmp_path, capture_dir, filer_dir, TZ="America/New_York")

    result = manage(env, "runfiler", "--localtime")

    assert result.returncode == 0, result.stderr
    assert (filer_dir / "2015/05/22/14" / f"pcap.{SEED_FIRST}").is_file()  # 18:58 UTC is 14:58 in New York
    assert not (filer_dir / "2015/05/22/18").exists()


def test_utc_is_the_default_whatever_the_local_zone(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    write_captures(capture_dir, [SEED_FIRST, SEED_SECOND])

    result = manage(filer_env(tmp_path, capture_dir, filer_dir, TZ="America/New_York"), "runfiler")

    assert result.returncode == 0, result.stderr
    assert (filer_dir / "2015/05/22/18" / f"pcap.{SEED_FIRST}").is_file()


def test_simulate_logs_the_plan_and_changes_nothing(dirs, caplog, tmp_path):
    capture_dir, filer_dir = dirs
    first = write_capture(capture_dir, SEED_FIRST)
    write_capture(capture_dir, SEED_SECOND)
    old = filer_dir / "2015/01/01/00"
    old.mkdir(parents=True)
    write_capture(old, 1420070400)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    caplog.set_level(logging.INFO, logger="node.filer")

    summary = runfiler(capture_dir, filer_dir, "-S", "--max-age", "24")

    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert f"Processing: pcap.{SEED_FIRST}" in caplog.messages
    assert f"Moving {first} => {filer_dir}/2015/05/22/18/" in caplog.messages
    assert any(m.startswith(f"Would delete {old} (1 files,") for m in caplog.messages)
    assert summary.startswith("Would file 1 files")


def test_a_capture_that_cannot_be_parsed_is_still_filed_without_an_index(dirs, caplog):
    capture_dir, filer_dir = dirs
    broken = capture_dir / f"pcap.{SEED_FIRST}"
    broken.write_bytes(b"this is not a capture file at all")
    write_capture(capture_dir, SEED_SECOND)
    caplog.set_level(logging.INFO, logger="node.filer")

    summary = runfiler(capture_dir, filer_dir)

    filed = filer_dir / "2015/05/22/18" / broken.name
    assert filed.read_bytes() == b"this is not a capture file at all"
    assert not index_path(filed).exists()
    assert any(m.startswith(f"Cannot index {broken}: ") for m in caplog.messages)
    assert "1 without an index" in summary


def test_a_capture_the_engine_chokes_on_is_still_filed(dirs, monkeypatch, caplog):
    capture_dir, filer_dir = dirs
    expected = write_captures(capture_dir, [SEED_FIRST, SEED_SECOND])

    def surprise(capture, out=None):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(filer, "build_index", surprise)
    runfiler(capture_dir, filer_dir)

    filed = filer_dir / "2015/05/22/18" / f"pcap.{SEED_FIRST}"
    assert filed.read_bytes() == expected[filed.name]
    assert not index_path(filed).exists()
    assert any("IndexError: index 7 is out of bounds" in m for m in caplog.messages)


def test_a_capture_whose_index_cannot_be_written_waits_for_the_next_pass(dirs, monkeypatch):
    capture_dir, filer_dir = dirs
    expected = write_captures(capture_dir, [SEED_FIRST, SEED_FIRST + 60, SEED_SECOND])
    del expected[f"pcap.{SEED_SECOND}"]
    real_build = filer.build_index
    struck = capture_dir.parent / "struck"  # a file, not a flag: worker processes build the indexes

    def disk_full_once(capture, out=None):
        if capture.name == f"pcap.{SEED_FIRST}" and not struck.exists():
            struck.touch()
            raise OSError(28, "No space left on device")
        return real_build(capture, out)

    monkeypatch.setattr(filer, "build_index", disk_full_once)
    with pytest.raises(CommandError, match="1 capture files could not be filed"):
        runfiler(capture_dir, filer_dir)
    assert (capture_dir / f"pcap.{SEED_FIRST}").exists()
    assert list(filed_files(filer_dir)) == [f"pcap.{SEED_FIRST + 60}"]

    runfiler(capture_dir, filer_dir)

    assert_filed_once(filer_dir, expected)


def test_a_different_file_of_the_same_name_is_never_overwritten(dirs, caplog):
    capture_dir, filer_dir = dirs
    capture = write_capture(capture_dir, SEED_FIRST)
    write_capture(capture_dir, SEED_SECOND)
    taken = filer_dir / "2015/05/22/18" / capture.name
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")

    with pytest.raises(CommandError, match="1 capture files could not be filed"):
        runfiler(capture_dir, filer_dir)

    assert taken.read_bytes() == b"someone else's file"
    assert capture.exists()
    assert any("already exists with other content" in m for m in caplog.messages)


def test_temporary_files_of_an_interrupted_run_are_removed(dirs):
    capture_dir, filer_dir = dirs
    write_captures(capture_dir, [SEED_FIRST, SEED_SECOND])
    hour = filer_dir / "2015/05/22/18"
    hour.mkdir(parents=True)
    leftovers = [hour / f".pcap.{SEED_FIRST}.filing", hour / f".pcap.{SEED_FIRST}.idx.4242.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")

    runfiler(capture_dir, filer_dir)

    assert temp_files(filer_dir) == []
    assert list(filed_files(filer_dir)) == [f"pcap.{SEED_FIRST}"]


def test_missing_directories_are_a_clear_error(dirs, tmp_path):
    capture_dir, filer_dir = dirs
    with pytest.raises(CommandError, match=r"capture directory .*/nope does not exist"):
        runfiler(tmp_path / "nope", filer_dir)
    with pytest.raises(CommandError, match=r"filer directory .*/nope does not exist"):
        runfiler(capture_dir, tmp_path / "nope")


def test_bad_option_values_are_refused(dirs):
    capture_dir, filer_dir = dirs
    bad = (
        ["--keep-free", "150"],
        ["--max-age", "-1"],
        ["--loop", "0"],
        ["--loop", "inf"],
        ["--prefix", "a/b"],
    )
    for args in bad:
        with pytest.raises(CommandError):
            runfiler(capture_dir, filer_dir, *args)


# --- locking --------------------------------------------------------------------


def test_a_second_filer_exits_1_while_one_runs(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    expected = write_captures(capture_dir, [SEED_FIRST, SEED_SECOND])
    del expected[f"pcap.{SEED_SECOND}"]
    env = filer_env(tmp_path, capture_dir, filer_dir)
    (tmp_path / "data").mkdir()

    with runner_lock(tmp_path / "data"):
        second = manage(env, "runfiler")
        assert (tmp_path / "data" / "filer.lock").exists()  # never unlinked while held

    assert second.returncode == 1
    assert "another filer is running" in second.stderr
    assert filed_files(filer_dir) == {}
    assert manage(env, "runfiler").returncode == 0
    assert_filed_once(filer_dir, expected)


def test_a_filer_killed_with_sigkill_does_not_block_the_next(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    write_captures(capture_dir, [BASE, BASE + 60])
    env = filer_env(tmp_path, capture_dir, filer_dir)
    log = tmp_path / "loop.log"
    looping = start_manage(env, "runfiler", "--loop", "30", log=log)
    try:
        wait_for(lambda: "Filed 1 files" in log.read_text(), what="the first pass")
        lock = tmp_path / "data" / "filer.lock"
        inode = lock.stat().st_ino
        busy = manage(env, "runfiler")
        assert busy.returncode == 1 and "another filer is running" in busy.stderr
    finally:
        looping.kill()
        looping.wait()

    assert manage(env, "runfiler").returncode == 0
    assert lock.stat().st_ino == inode


def test_two_filers_started_together_file_each_capture_once(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    epochs = [BASE + 60 * n for n in range(12)]
    expected = write_captures(capture_dir, epochs, seconds=5, pps=400)
    del expected[f"pcap.{epochs[-1]}"]
    env = filer_env(tmp_path, capture_dir, filer_dir)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]

    racers = [start_manage(env, "runfiler", log=log) for log in logs]
    codes = sorted(p.wait(timeout=60) for p in racers)

    assert codes in ([0, 0], [0, 1]), [log.read_text() for log in logs]
    assert sum("another filer is running" in log.read_text() for log in logs) == codes.count(1)
    assert_filed_once(filer_dir, expected)


# --- crash safety -----------------------------------------------------------------


def wait_for(condition, *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def crash_then_rerun(tmp_path: Path, capture_dir: Path, filer_dir: Path, step: str) -> None:
    env = filer_env(tmp_path, capture_dir, filer_dir)
    crashed = manage({**env, "PAR_FILER_CRASH_AT": step}, "runfiler")
    assert crashed.returncode == -signal.SIGKILL, f"never reached {step}: {crashed.stderr}"
    rerun = manage(env, "runfiler")
    assert rerun.returncode == 0, rerun.stderr


@pytest.mark.parametrize("step", ["locked", "indexed", "indexed:2", "moved", "moved:3"])
def test_a_filer_killed_at_any_step_files_everything_once_when_rerun(tmp_path, step):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    epochs = [BASE + 60 * n for n in range(5)]
    expected = write_captures(capture_dir, epochs)
    del expected[f"pcap.{epochs[-1]}"]

    crash_then_rerun(tmp_path, capture_dir, filer_dir, step)

    assert_filed_once(filer_dir, expected)
    assert [p.name for p in capture_dir.iterdir()] == [f"pcap.{epochs[-1]}"]
    assert temp_files(capture_dir, filer_dir) == []


@pytest.fixture
def other_fs_capture_dir(tmp_path: Path):
    """A capture directory on a tmpfs: another file system than the filer directory."""
    with tmpfs(tmp_path / "mnt", size="64m") as mount:
        capture_dir = mount / "pcap"
        capture_dir.mkdir()
        assert capture_dir.stat().st_dev != tmp_path.stat().st_dev
        yield capture_dir


def test_it_files_across_file_systems(tmp_path, other_fs_capture_dir, settings):
    capture_dir, filer_dir = other_fs_capture_dir, tmp_path / "filed"
    filer_dir.mkdir()
    settings.PAR_DATA_DIR = tmp_path / "data"
    settings.PAR_DATA_DIR.mkdir()
    epochs = [BASE + 60 * n for n in range(4)]
    expected = write_captures(capture_dir, epochs)
    del expected[f"pcap.{epochs[-1]}"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in capture_dir.iterdir()}

    runfiler(capture_dir, filer_dir)

    assert_filed_once(filer_dir, expected)
    for name, paths in filed_files(filer_dir).items():
        assert paths[0].stat().st_mtime_ns == mtimes[name]
    assert [p.name for p in capture_dir.iterdir()] == [f"pcap.{epochs[-1]}"]
    assert temp_files(capture_dir, filer_dir) == []


@pytest.mark.parametrize("step", ["copying", "copied", "placed", "placed:2", "moved:2"])
def test_a_filer_killed_during_a_cross_device_move_files_everything_once(
    tmp_path, other_fs_capture_dir, step
):
    capture_dir, filer_dir = other_fs_capture_dir, tmp_path / "filed"
    filer_dir.mkdir()
    epochs = [BASE + 60 * n for n in range(4)]
    expected = write_captures(capture_dir, epochs, seconds=6, pps=500)  # over 1 MiB: copied in chunks
    del expected[f"pcap.{epochs[-1]}"]

    crash_then_rerun(tmp_path, capture_dir, filer_dir, step)

    assert_filed_once(filer_dir, expected)
    assert [p.name for p in capture_dir.iterdir()] == [f"pcap.{epochs[-1]}"]
    assert temp_files(capture_dir, filer_dir) == []


def pending_captures(capture_dir: Path) -> int:
    """Finished captures still waiting in ``capture_dir`` (all but the newest, which is live)."""
    return max(len([p for p in capture_dir.iterdir() if p.name.startswith("pcap.")]) - 1, 0)


def kill_during_filing(env: dict[str, str], log: Path, target: int, delay: float, jobs: str) -> bool:
    """Start the filer, kill it ``delay`` seconds after it logs its ``target``-th file; killed or not."""
    process = start_manage(env, "runfiler", "--jobs", jobs, log=log)
    try:
        deadline = time.monotonic() + 60
        # Polled tightly: the kill must land in the target file's work, not several files later.
        while process.poll() is None and log.read_text().count("Processing:") < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the filer never reached its file number {target}")
            time.sleep(0.001)
        time.sleep(delay)
        if process.poll() is not None:
            assert process.returncode == 0, log.read_text()
            return False
        process.kill()
        return True
    finally:
        process.kill()
        process.wait()


def kill_at_random_times(
    tmp_path: Path,
    capture_dir: Path,
    filer_dir: Path,
    expected: dict[str, bytes],
    seed: int,
    kills: int = 4,
    jobs: str = "1",
) -> int:
    """Kill the filer at random moments of its work until it was killed ``kills`` times; the kills.

    Each run is killed a random moment after it starts on a file chosen at random among the first
    half of those waiting, so at least two more files are still to do: however fast or busy the
    machine, the filer is still working when it is struck. Should it finish all the same (the test
    itself stalled), a new batch of captures arrives, so the count of kills never depends on timing.
    """
    env = filer_env(tmp_path, capture_dir, filer_dir)
    rng = random.Random(seed)
    done = 0
    next_epoch = max(int(name.split(".")[1]) for name in [p.name for p in capture_dir.iterdir()]) + 60
    for attempt in range(40):
        if done >= kills:
            break
        if pending_captures(capture_dir) < 4:
            live = next_epoch - 60
            batch = [next_epoch + 60 * n for n in range(6)]
            expected.update(write_captures(capture_dir, batch, seconds=10, pps=500))
            expected[f"pcap.{live}"] = (capture_dir / f"pcap.{live}").read_bytes()
            del expected[f"pcap.{batch[-1]}"]
            next_epoch = batch[-1] + 60
        target = rng.randint(1, max(1, (pending_captures(capture_dir) - 2) // 2))
        log = tmp_path / f"filer-{attempt}.log"
        killed = kill_during_filing(env, log, target, rng.uniform(0, 0.03), jobs)
        done += killed
    return done


def assert_random_kills_file_everything_once(
    tmp_path: Path, capture_dir: Path, filer_dir: Path, jobs: str = "1"
) -> None:
    epochs = [BASE + 60 * n for n in range(13)]
    expected = write_captures(capture_dir, epochs, seconds=10, pps=500)
    del expected[f"pcap.{epochs[-1]}"]

    kills = kill_at_random_times(tmp_path, capture_dir, filer_dir, expected, seed=20150522, jobs=jobs)
    final = manage(filer_env(tmp_path, capture_dir, filer_dir), "runfiler", "--jobs", jobs)

    assert kills == 4
    assert final.returncode == 0, final.stderr
    assert_filed_once(filer_dir, expected)
    live = max(int(name.split(".")[1]) for name in expected) + 60
    assert [p.name for p in capture_dir.iterdir()] == [f"pcap.{live}"]
    assert temp_files(capture_dir, filer_dir) == []


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_filer_killed_at_random_times_files_everything_once(tmp_path, jobs):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    assert_random_kills_file_everything_once(tmp_path, capture_dir, filer_dir, jobs)


@pytest.mark.slow
def test_a_filer_killed_at_random_times_across_file_systems_files_everything_once(
    tmp_path, other_fs_capture_dir
):
    filer_dir = tmp_path / "filed"
    filer_dir.mkdir()
    assert_random_kills_file_everything_once(tmp_path, other_fs_capture_dir, filer_dir)


# --- loop -------------------------------------------------------------------------


def test_loop_files_new_captures_and_stops_on_sigterm(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    write_captures(capture_dir, [BASE, BASE + 60])
    env = filer_env(tmp_path, capture_dir, filer_dir)
    log = tmp_path / "loop.log"
    looping = start_manage(env, "runfiler", "--loop", "0.2", log=log)
    try:
        wait_for(lambda: f"pcap.{BASE}" in filed_files(filer_dir), what="the first file")
        write_capture(capture_dir, BASE + 120)  # the capture tool rotates
        wait_for(lambda: f"pcap.{BASE + 60}" in filed_files(filer_dir), what="the next file")
        looping.send_signal(signal.SIGTERM)
        assert looping.wait(timeout=10) == 0
    finally:
        looping.kill()
    assert "Filer stopped" in log.read_text()


def test_loop_stops_at_once_on_sigint_while_it_sleeps(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    env = filer_env(tmp_path, capture_dir, filer_dir)
    log = tmp_path / "loop.log"
    looping = start_manage(env, "runfiler", "--loop", "3600", log=log)
    try:
        wait_for(lambda: "Filed 0 files" in log.read_text(), what="the first pass")
        looping.send_signal(signal.SIGINT)
        assert looping.wait(timeout=5) == 0
    finally:
        looping.kill()


def test_loop_survives_a_failed_pass(dirs, monkeypatch, caplog):
    capture_dir, filer_dir = dirs
    write_captures(capture_dir, [BASE, BASE + 60])
    real_pass = filer.run_pass
    calls = []
    stop = threading.Event()

    def flaky_pass(opts, stop_event=None):
        calls.append(1)
        if len(calls) == 1:
            raise PermissionError("filer directory is read-only")
        summary = real_pass(opts, stop_event)
        stop.set()
        return summary

    monkeypatch.setattr(filer, "run_pass", flaky_pass)
    caplog.set_level(logging.INFO, logger="node.filer")
    filer.run_loop(options(capture_dir, filer_dir), 0.01, stop)

    assert len(calls) == 2
    assert "The filing pass failed; the next one starts in 0.01 seconds" in caplog.messages
    assert list(filed_files(filer_dir)) == [f"pcap.{BASE}"]


def test_loop_follows_its_first_pass_with_a_tier_pass_and_not_every_one(dirs):
    # A tier pass lists the whole tree: a resident filer runs one every TIER_INTERVAL, not every minute.
    capture_dir, filer_dir = dirs
    raw = []
    for epoch in (BASE, BASE + 60):  # filed raw, as by a filer with PAR_COMPRESS=none
        hour = store.hour_dir(filer_dir, epoch, utc=True)
        hour.mkdir(parents=True, exist_ok=True)
        write_captures(hour, [epoch])
        raw.append(hour / f"pcap.{epoch}")
    second = filer_dir.parent / "second"
    os.replace(raw[1], second)
    opts = options(capture_dir, filer_dir, compress="zstd")
    stop = threading.Event()
    looping = threading.Thread(target=filer.run_loop, args=(opts, 0.01, stop))
    looping.start()
    try:
        wait_for(lambda: filerstats.read_stats(opts.data_dir).compressed == 1, what="the first tier pass")
        os.replace(second, raw[1])
        passes = filerstats.read_stats(opts.data_dir).passes
        wait_for(lambda: filerstats.read_stats(opts.data_dir).passes >= passes + 3, what="three more passes")
    finally:
        stop.set()
        looping.join()
    assert not raw[0].exists() and raw[1].exists()  # the first compressed, the second not yet
    assert filer.TIER_INTERVAL >= 600


def test_stray_names_past_the_year_9998_do_not_fail_a_localtime_pass_east_of_utc(dirs, monkeypatch):
    capture_dir, filer_dir = dirs
    write_captures(capture_dir, [BASE, BASE + 60])
    for epoch in (253402300000, 253402300001):  # late 9999 in UTC, the year 10000 in Kiritimati
        (capture_dir / f"pcap.{epoch}").write_bytes(b"stray")
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        summary = filer.run_pass(options(capture_dir, filer_dir, utc=False))
    finally:
        monkeypatch.undo()
        time.tzset()

    assert summary.failed == []
    assert list(filed_files(filer_dir)) == [f"pcap.{BASE}"]  # pcap.{BASE + 60} is the live file
    left = sorted(p.name for p in capture_dir.iterdir())
    assert left == [f"pcap.{BASE + 60}", "pcap.253402300000", "pcap.253402300001"]


def test_a_stray_file_named_in_the_future_is_left_alone_and_the_live_file_not_filed(dirs, caplog):
    capture_dir, filer_dir = dirs
    now = int(time.time())
    write_captures(capture_dir, [now - 120, now - 60])  # pcap.<now - 60> is being written
    stray = write_capture(capture_dir, now + 2 * 3600)
    caplog.set_level(logging.INFO, logger="node.filer")

    for _ in range(2):
        summary = filer.run_pass(options(capture_dir, filer_dir))

    assert summary.failed == []
    assert list(filed_files(filer_dir)) == [f"pcap.{now - 120}"]
    assert sorted(p.name for p in capture_dir.iterdir()) == [f"pcap.{now - 60}", stray.name]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        warnings
        == [
            f"Leaving alone 1 capture files named more than an hour in the future (a wrong clock, or files "
            f"from elsewhere?): {stray.name}"
        ]
        * 2
    )  # once per pass


def test_one_file_that_cannot_be_filed_does_not_fail_the_pass(dirs, monkeypatch, caplog):
    capture_dir, filer_dir = dirs
    write_captures(capture_dir, [BASE, BASE + 60, BASE + 120])
    real_hour_dir = store.hour_dir

    def hour_dir(filer_dir, epoch, utc):
        if epoch == BASE:
            raise ValueError("year 10000 is out of range")
        return real_hour_dir(filer_dir, epoch, utc)

    monkeypatch.setattr(store, "hour_dir", hour_dir)
    caplog.set_level(logging.INFO, logger="node.filer")
    summary = filer.run_pass(options(capture_dir, filer_dir))

    assert summary.failed == [f"pcap.{BASE}"]
    assert list(filed_files(filer_dir)) == [f"pcap.{BASE + 60}"]
    assert (capture_dir / f"pcap.{BASE}").exists()
    assert f"Cannot file {capture_dir / f'pcap.{BASE}'}" in caplog.messages


# --- retention --------------------------------------------------------------------

DiskUsage = namedtuple("DiskUsage", "total used free")


def fill_hours(filer_dir: Path, first_epoch: int, hours: int, pps: int = 100) -> list[Path]:
    """``hours`` filed hour directories from ``first_epoch`` on, each with two captures and their indexes."""
    made = []
    first_epoch -= first_epoch % 3600
    for hour in range(hours):
        for n in range(2):
            epoch = first_epoch + hour * 3600 + n * 600
            directory = store.hour_dir(filer_dir, epoch, True)
            directory.mkdir(parents=True, exist_ok=True)
            capture = write_capture(directory, epoch, seconds=2, pps=pps)
            index_path(capture).write_bytes(b"index")
        made.append(directory)
    return made


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_max_age_deletes_the_hours_older_than_that(dirs, caplog):
    capture_dir, filer_dir = dirs
    this_hour = int(time.time() // 3600 * 3600)
    hours = fill_hours(filer_dir, this_hour - 5 * 3600, 6)
    sizes = [tree_bytes(h) for h in hours]
    caplog.set_level(logging.INFO, logger="node.filer")

    runfiler(capture_dir, filer_dir, "--max-age", "3")

    # An hour goes once all of it is more than 3 hours old: the one that ended 4 hours ago, and older.
    assert [h.exists() for h in hours] == [False, False, True, True, True, True]
    assert [m for m in caplog.messages if m.startswith("Deleting ")] == [
        f"Deleting {h} (4 files, {size} bytes): older than 3 hours"
        for h, size in zip(hours[:2], sizes[:2], strict=True)
    ]


def test_a_filer_killed_while_deleting_an_hour_finishes_it_when_rerun(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    this_hour = int(time.time() // 3600 * 3600)
    hours = fill_hours(filer_dir, this_hour - 5 * 3600, 6)
    env = filer_env(tmp_path, capture_dir, filer_dir)

    crashed = manage({**env, "PAR_FILER_CRASH_AT": "deleting:2"}, "runfiler", "--max-age", "3")
    assert crashed.returncode == -signal.SIGKILL
    assert hours[0].exists() and len(list(hours[0].iterdir())) == 2

    assert manage(env, "runfiler", "--max-age", "3").returncode == 0
    assert [h.exists() for h in hours] == [False, False, True, True, True, True]


def disk_of(filer_dir: Path, total: int):
    """A stand-in for shutil.disk_usage: a disk of ``total`` bytes holding only the filer tree."""

    def usage(path):
        used = tree_bytes(filer_dir)
        return DiskUsage(total, used, total - used)

    return usage


def test_keep_free_deletes_the_oldest_hours_until_enough_is_free(dirs, monkeypatch, caplog):
    capture_dir, filer_dir = dirs
    hours = fill_hours(filer_dir, BASE - 10 * 3600, 10)
    sizes = [tree_bytes(h) for h in hours]
    total = int(sum(sizes) / 0.95)  # the tree leaves 5% free
    monkeypatch.setattr("shutil.disk_usage", disk_of(filer_dir, total))
    caplog.set_level(logging.INFO, logger="node.filer")

    runfiler(capture_dir, filer_dir, "--keep-free", "40")

    deleted = sum(not h.exists() for h in hours)
    assert [h.exists() for h in hours] == [False] * deleted + [True] * (10 - deleted)
    free_after = lambda n: (total - sum(sizes[n:])) / total  # noqa: E731
    assert free_after(deleted) >= 0.40 > free_after(deleted - 1), "it deleted too few or too many hours"
    deletions = [m for m in caplog.messages if m.startswith("Deleting ")]
    assert len(deletions) == deleted
    assert all("(4 files," in m and "% free, keeping 40%" in m for m in deletions)
    assert not (filer_dir / "2015/05/22/08").exists()
    assert (filer_dir / "2015/05/22").is_dir()


def test_keep_free_never_deletes_the_newest_hour(dirs, monkeypatch, caplog):
    capture_dir, filer_dir = dirs
    hours = fill_hours(filer_dir, BASE - 3 * 3600, 3)
    monkeypatch.setattr("shutil.disk_usage", lambda path: DiskUsage(100, 99, 1))
    caplog.set_level(logging.INFO, logger="node.filer")

    runfiler(capture_dir, filer_dir, "--keep-free", "10")

    assert [h.exists() for h in hours] == [False, False, True]
    assert any("no older captures are left to delete" in m for m in caplog.messages)


def test_keep_free_on_a_small_file_system(tmp_path, settings):
    settings.PAR_DATA_DIR = tmp_path / "data"
    settings.PAR_DATA_DIR.mkdir()
    capture_dir = tmp_path / "pcap"
    capture_dir.mkdir()
    with tmpfs(tmp_path / "mnt", size="4m") as filer_dir:
        hours = fill_hours(filer_dir, BASE - 8 * 3600, 8, pps=200)
        usage = os.statvfs(filer_dir)
        assert usage.f_bavail / usage.f_blocks < 0.3, "the test data should nearly fill the file system"

        runfiler(capture_dir, filer_dir, "--keep-free", "50")

        usage = os.statvfs(filer_dir)
        assert usage.f_bavail / usage.f_blocks >= 0.5
        kept = [h.exists() for h in hours]
        assert kept == sorted(kept) and 1 <= sum(kept) < 8  # the oldest went first
