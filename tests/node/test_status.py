"""GET /status: disk usage, file system, capture process and filed data, gathered in Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import Client, override_settings

from node.status import capture_processes, disk_free, walk_tree

EPOCH_OLD = 1424966400  # 2015-02-26 16:00 UTC
EPOCH_NEW = 1424973600  # 2015-02-26 18:00 UTC


def hour_path(root: Path, epoch: int) -> Path:
    moment = datetime.fromtimestamp(epoch, UTC)
    return root / moment.strftime("%Y/%m/%d/%H")


def make_tree(tmp_path: Path) -> tuple[Path, Path]:
    capture, filed = tmp_path / "capture", tmp_path / "filed"
    capture.mkdir()
    for epoch in (EPOCH_OLD, EPOCH_OLD + 60, EPOCH_NEW):
        directory = hour_path(filed, epoch)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"pcap.{epoch}").write_bytes(b"x" * 10_000)
        (directory / f"pcap.{epoch}.idx").write_bytes(b"i" * 100)
    (hour_path(filed, EPOCH_NEW) / ".pcap.123.tmp").write_bytes(b"t")  # a filer's temporary: neither
    (capture / "pcap.1424977200").write_bytes(b"y" * 5000)
    (capture / "pcap.1424977260").write_bytes(b"z" * 3000)  # the live one
    (capture / "notes.txt").write_text("not a capture")
    return capture, filed


def du_bytes(path: Path) -> int:
    """The oracle: coreutils du."""
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[0])


def test_disk_usage_matches_du(tmp_path):
    capture, filed = make_tree(tmp_path)
    os.link(capture / "pcap.1424977200", capture / "pcap.hardlink")  # du counts it once
    assert walk_tree(capture, "pcap").bytes == du_bytes(capture)
    assert walk_tree(filed, "pcap").bytes == du_bytes(filed)


def test_the_walk_counts_captures_and_indexes_and_finds_the_oldest_and_newest(tmp_path):
    _capture, filed = make_tree(tmp_path)
    facts = walk_tree(filed, "pcap")
    assert (facts.captures, facts.indexes) == (3, 3)
    assert (facts.oldest, facts.newest) == (EPOCH_OLD, EPOCH_NEW)
    assert facts.complete


def test_a_stray_file_with_an_epoch_past_the_year_9999_is_not_a_capture(tmp_path):
    capture, filed = make_tree(tmp_path)
    for directory in (capture, hour_path(filed, EPOCH_NEW)):
        (directory / "pcap.999999999999").write_bytes(b"s")
        (directory / "pcap.999999999999.idx").write_bytes(b"s")
    with override_settings(
        ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node", PAR_CAPTURE_DIR=capture, PAR_FILER_DIR=filed
    ):
        response = Client().get("/status")
    assert response.status_code == 200
    body = response.json()
    assert body["capture"]["live_file"]["name"] == "pcap.1424977260"
    assert (body["files"]["count"], body["files"]["indexes"], body["files"]["waiting"]) == (3, 3, 1)
    assert body["files"]["newest"] == "2015-02-26T18:00:00+00:00"


def test_the_walk_is_bounded(tmp_path):
    _capture, filed = make_tree(tmp_path)
    facts = walk_tree(filed, "pcap", limit=3)
    assert not facts.complete


def test_a_missing_directory_is_reported_not_raised(tmp_path):
    facts = walk_tree(tmp_path / "gone", "pcap")
    assert facts.bytes == 0 and facts.errors
    assert disk_free(tmp_path / "gone")["total"] is None


def test_file_system_figures_match_df(tmp_path):
    df = shutil.which("df")
    if df is None:
        pytest.skip("df (coreutils) is not installed: no oracle")
    ours = disk_free(tmp_path)
    out = subprocess.run(
        [df, "--block-size=1", "--output=size,used,avail,target", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    size, used, avail, target = out.stdout.splitlines()[1].split()
    assert ours["total"] == int(size)
    slack = 64 * 1024 * 1024  # others write to this disk meanwhile
    assert abs(ours["used"] - int(used)) < slack and abs(ours["free"] - int(avail)) < slack
    assert ours["mount"] == target


def test_a_capture_tool_is_seen_by_its_process_name(tmp_path):
    fake = tmp_path / "daemonlogger"
    shutil.copy(shutil.which("sleep"), fake)
    process = subprocess.Popen([str(fake), "30"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = capture_processes()
            if {"name": "daemonlogger", "pid": process.pid} in found:
                break
            time.sleep(0.05)
        assert {"name": "daemonlogger", "pid": process.pid} in found
    finally:
        process.kill()
        process.wait()
    assert {"name": "daemonlogger", "pid": process.pid} not in capture_processes()


def test_without_proc_the_capture_state_is_unknown(tmp_path):
    assert capture_processes(tmp_path) is None


def test_get_status_answers_every_field_as_numbers_and_times(tmp_path):
    capture, filed = make_tree(tmp_path)
    with override_settings(
        ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node", PAR_CAPTURE_DIR=capture, PAR_FILER_DIR=filed
    ):
        response = Client().get("/status")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "hostname",
        "capturedir",
        "filerdir",
        "du",
        "df",
        "capture",
        "files",
        "system_date",
        "utc_datetime",
    }
    assert body["capturedir"] == str(capture) and body["filerdir"] == str(filed)
    assert body["du"] == {"capturedir": du_bytes(capture), "filerdir": du_bytes(filed)}
    assert all(isinstance(body["df"]["filerdir"][k], int) for k in ("total", "used", "free"))
    assert body["capture"]["live_file"]["name"] == "pcap.1424977260"
    assert body["capture"]["live_file"]["bytes"] == 3000
    assert body["capture"]["running"] in (True, False)
    files = body["files"]
    assert (files["count"], files["indexes"], files["waiting"]) == (3, 3, 1)
    assert files["oldest"] == "2015-02-26T16:00:00+00:00"
    assert files["newest"] == "2015-02-26T18:00:00+00:00"
    utc_now = datetime.fromisoformat(body["utc_datetime"])
    assert abs((datetime.now(UTC) - utc_now).total_seconds()) < 5
    assert datetime.fromisoformat(body["system_date"]) == utc_now


def test_status_never_runs_a_program(tmp_path, monkeypatch):
    capture, filed = make_tree(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("status ran a program")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(os, "popen", refuse)
    with override_settings(
        ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node", PAR_CAPTURE_DIR=capture, PAR_FILER_DIR=filed
    ):
        assert Client().get("/status").status_code == 200


def test_the_newest_filed_data_is_the_last_packet_its_index_knows(tmp_path):
    from tests.node.captures import make_tree

    tree = make_tree(tmp_path, files=3, packets=50)
    newest_filed = tree.files[-2]
    last_ns = max(ts for ts, _, _ in tree.records if ts < (int(newest_filed.name.split(".")[1]) + 60) * 10**9)
    with override_settings(
        ROOT_URLCONF="parsite.urls_node",
        PAR_ROLE="node",
        PAR_CAPTURE_DIR=tree.capture_dir,
        PAR_FILER_DIR=tree.filer_dir,
    ):
        files = Client().get("/status").json()["files"]
    assert (files["count"], files["indexes"], files["waiting"]) == (2, 2, 0)
    assert files["oldest"] == "2015-02-26T16:00:00+00:00"
    assert files["newest"] == datetime.fromtimestamp(last_ns // 10**9, UTC).isoformat()
    assert files["newest"] != "2015-02-26T16:01:00+00:00"  # not merely the file's start


def test_a_file_named_in_the_future_is_not_reported_as_the_live_one(tmp_path):
    capture, filed = make_tree(tmp_path)
    future = int(time.time()) + 30 * 86400
    (capture / f"pcap.{future}").write_bytes(b"x")
    with override_settings(
        ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node", PAR_CAPTURE_DIR=capture, PAR_FILER_DIR=filed
    ):
        body = Client().get("/status").json()
    assert body["capture"]["live_file"]["name"] == "pcap.1424977260"
    assert body["files"]["waiting"] == 1
    assert body["files"]["future"] == [f"pcap.{future}"]
