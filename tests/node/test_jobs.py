"""`runfiler --jobs N` and `reindex --jobs N`: N index builds at once in worker processes that die
with the filer, the same log lines and the same crash safety as one process."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from engine.index import index_is_current
from node import filer
from node.jobs import cores_available
from tests.node.filing import ROOT, filer_env, manage, start_manage, temp_files, write_captures
from tests.node.test_filer import BASE, assert_filed_once, runfiler, wait_for


def captures(capture_dir: Path, count: int, **kwargs) -> dict[str, bytes]:
    """``count`` captures a minute apart; name -> bytes of those to be filed (all but the newest)."""
    epochs = [BASE + 60 * n for n in range(count)]
    expected = write_captures(capture_dir, epochs, **kwargs)
    del expected[f"pcap.{epochs[-1]}"]
    return expected


def test_the_default_is_the_cores_this_process_may_use():
    assert cores_available() == len(os.sched_getaffinity(0))


def test_jobs_2_builds_two_indexes_at_once_in_worker_processes(dirs, monkeypatch):
    capture_dir, filer_dir = dirs
    expected = captures(capture_dir, 5)
    starts = capture_dir.parent / "starts"
    starts.mkdir()
    real_build = filer.build_index

    def build_with_another(capture, out=None):
        """Build only once another build has started too: two at once, or a timeout."""
        (starts / capture.name).write_text(str(os.getpid()))
        deadline = time.monotonic() + 20
        while len(os.listdir(starts)) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("no other index build started meanwhile")
            time.sleep(0.01)
        return real_build(capture, out)

    monkeypatch.setattr(filer, "build_index", build_with_another)
    runfiler(capture_dir, filer_dir, "--jobs", "2")

    assert_filed_once(filer_dir, expected)
    builders = {(starts / name).read_text() for name in expected}
    assert len(builders) == 2 and str(os.getpid()) not in builders


def test_one_file_to_file_is_indexed_in_the_filer_itself_whatever_jobs_says(dirs, monkeypatch):
    # A cron pass a minute finds one new capture: no worker pool is forked for it.
    capture_dir, filer_dir = dirs
    expected = captures(capture_dir, 2)
    builders = []
    real_build = filer.build_index

    def build_noting_the_process(capture, out=None):
        builders.append(os.getpid())  # a worker's list is its own: only the filer's own builds land here
        return real_build(capture, out)

    monkeypatch.setattr(filer, "build_index", build_noting_the_process)
    runfiler(capture_dir, filer_dir, "--jobs", "2")

    assert_filed_once(filer_dir, expected)
    assert builders == [os.getpid()]


def log_lines(messages: list[str], *dirs: Path) -> list[str]:
    """The filer's log lines with its directories and timings taken out, to compare two runs."""
    lines = []
    for message in messages:
        for n, directory in enumerate(dirs):
            message = message.replace(str(directory), f"<dir{n}>")
        lines.append(re.sub(r"in [0-9.]+ seconds", "in <t> seconds", message))
    return lines


def test_jobs_2_logs_the_lines_of_jobs_1_the_files_in_the_same_order(tmp_path, settings, caplog):
    settings.PAR_DATA_DIR = tmp_path / "data"
    settings.PAR_DATA_DIR.mkdir()
    caplog.set_level(logging.INFO, logger="node.filer")
    logged = {}
    for jobs in ("1", "2"):
        capture_dir, filer_dir = tmp_path / jobs / "pcap", tmp_path / jobs / "filed"
        capture_dir.mkdir(parents=True)
        filer_dir.mkdir()
        captures(capture_dir, 6)
        (capture_dir / f"pcap.{BASE + 30}").write_bytes(b"not a capture at all")  # a warning too
        caplog.clear()
        summary = runfiler(capture_dir, filer_dir, "--jobs", jobs)
        logged[jobs] = log_lines([*caplog.messages, summary], capture_dir, filer_dir)

    assert sorted(logged["2"]) == sorted(logged["1"])
    processing = [[line for line in lines if line.startswith("Processing: ")] for lines in logged.values()]
    assert processing[0] == processing[1] and len(processing[0]) == 6
    assert any(line.startswith("Cannot index <dir0>/pcap.") for line in logged["2"])


def test_a_bad_jobs_value_is_refused(dirs):
    capture_dir, filer_dir = dirs
    for value in ("0", "-2", "two"):
        with pytest.raises(CommandError, match="--jobs"):
            runfiler(capture_dir, filer_dir, "--jobs", value)
        with pytest.raises(CommandError, match="--jobs"):
            call_command("reindex", "--jobs", value)


# --- worker processes and crashes ------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_workers_die_with_a_killed_filer_and_the_rerun_files_everything_once(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    expected = captures(capture_dir, 12, seconds=10, pps=500)
    env = filer_env(tmp_path, capture_dir, filer_dir)
    log = tmp_path / "filer.log"

    filing = start_manage(env, "runfiler", "--jobs", "2", log=log)
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 60
        while len(workers) < 2:
            assert filing.poll() is None, f"the filer finished before it could be killed: {log.read_text()}"
            assert time.monotonic() < deadline, "no two workers started"
            workers = children_of(filing.pid)
            time.sleep(0.001)
        filing.kill()
    finally:
        filing.kill()
        filing.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), what="the workers to die", timeout=10)

    rerun = manage(env, "runfiler", "--jobs", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert_filed_once(filer_dir, expected)
    assert temp_files(capture_dir, filer_dir) == []


def test_a_worker_killed_while_indexing_fails_its_files_for_this_pass_only(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    expected = captures(capture_dir, 6)
    env = filer_env(tmp_path, capture_dir, filer_dir)

    struck = manage({**env, "PAR_FILER_CRASH_AT": "indexing:2"}, "runfiler", "--jobs", "2")
    assert struck.returncode == 1, struck.stderr
    assert "the worker process indexing it died" in struck.stderr
    assert "capture files could not be filed" in struck.stderr
    rerun = manage(env, "runfiler", "--jobs", "2")

    assert rerun.returncode == 0, rerun.stderr
    assert_filed_once(filer_dir, expected)
    assert temp_files(capture_dir, filer_dir) == []


def test_reindex_jobs_2_killed_then_rerun_leaves_every_index_current(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    expected = captures(capture_dir, 9, seconds=10, pps=500)
    env = filer_env(tmp_path, capture_dir, filer_dir)
    assert manage(env, "runfiler", "--jobs", "2").returncode == 0
    filed = sorted(p for p in filer_dir.rglob("pcap.*") if not p.name.endswith((".idx", ".summary")))

    for attempt in range(5):  # until a run is struck before it is done (each rebuilds every index)
        log = tmp_path / f"reindex-{attempt}.log"
        indexing = start_manage(env, "reindex", "--force", "--jobs", "2", log=log)
        try:
            deadline = time.monotonic() + 60
            while indexing.poll() is None and log.read_text().count("Indexing ") < 3:
                assert time.monotonic() < deadline, "reindex never reached its third file"
                time.sleep(0.001)
            workers = children_of(indexing.pid)
            indexing.send_signal(signal.SIGKILL)
        finally:
            indexing.kill()
            indexing.wait()
        if indexing.returncode == -signal.SIGKILL:
            break
    assert indexing.returncode == -signal.SIGKILL, "every reindex finished before it could be killed"
    wait_for(lambda: not any(alive(pid) for pid in workers), what="the workers to die", timeout=10)
    rerun = manage(env, "reindex", "--jobs", "2")

    assert rerun.returncode == 0, rerun.stderr
    assert all(index_is_current(capture) for capture in filed)
    assert len(filed) == len(expected)
    assert temp_files(filer_dir) == []


def test_a_stop_sent_to_the_whole_service_lets_the_workers_finish_their_files(tmp_path):
    """systemd stops a service with SIGTERM to all its processes: the workers included."""
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    expected = captures(capture_dir, 12, seconds=10, pps=500)
    env = filer_env(tmp_path, capture_dir, filer_dir)
    log = tmp_path / "filer.log"
    with open(log, "ab") as out:
        service = subprocess.Popen(
            [sys.executable, "manage.py", "runfiler", "--loop", "60", "--jobs", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own process group, as a service's cgroup
        )
    try:
        deadline = time.monotonic() + 60
        while len(children_of(service.pid)) < 2 or log.read_text().count("Processing:") < 3:
            assert service.poll() is None, log.read_text()
            assert "Filed " not in log.read_text(), "the pass ended before it could be stopped"
            assert time.monotonic() < deadline, "no two workers busy"
            time.sleep(0.001)
        os.killpg(service.pid, signal.SIGTERM)
        assert service.wait(timeout=60) == 0, log.read_text()
    finally:
        service.kill()
        service.wait()

    text = log.read_text()
    assert "Cannot file" not in text and "Filer stopped" in text, text
    assert manage(env, "runfiler").returncode == 0
    assert_filed_once(filer_dir, expected)
