"""Local retention beside the archive: it deletes local capture bytes only, never what the archive answers for.

``--max-age`` and ``--keep-free`` delete an old hour's local captures; an archived capture's record,
its index and the hour's summary stay, so the hour keeps answering from the archive (and nothing in
the bucket is orphaned) until the archive's own retention (``PAR_ARCHIVE_MAX_AGE``) deletes the
object, then them, then the emptied hour directory. Checked with a real S3 server (SeaweedFS) and,
where a step can be cut short, with the filer killed there and run again.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import namedtuple
from pathlib import Path

import pytest
from django.test import Client, override_settings

from engine.formats import archived
from engine.formats.seekable import forget_shared_frames
from engine.index import build_index
from engine.index.summary import read_summary, summary_path
from node import retention, store, tiers
from tests.node.filing import filer_env, manage, write_captures
from tests.s3 import S3Server, s3_env

DiskUsage = namedtuple("DiskUsage", "total used free")
H0 = 1432321101 - 1432321101 % 3600  # an hour's start


@pytest.fixture
def archive(weed_s3: S3Server, monkeypatch):
    bucket = weed_s3.new_bucket()
    for name, value in s3_env(weed_s3).items():
        if name.startswith(("AWS_", "PAR_ARCHIVE")):
            monkeypatch.setenv(name, value)
    archived.configure(weed_s3.endpoint)
    forget_shared_frames()
    return bucket, tiers.ArchiveOptions(bucket, "sensor1/", weed_s3.endpoint, after_hours=10_000.0)


def three_hours(filer_dir: Path, first: int, third: int = 2) -> list[Path]:
    """Hours ``first``, +1 and +``third``: two captures in the first, one in each other, indexed and
    summarised."""
    hours = []
    for epochs in ([first + 60, first + 120], [first + 3660], [first + third * 3600 + 60]):
        directory = store.hour_dir(filer_dir, epochs[0], utc=True)
        directory.mkdir(parents=True)
        write_captures(directory, epochs, seconds=6, pps=200)
        for epoch in epochs:
            build_index(directory / f"pcap.{epoch}")
        store.refresh_summary(directory, "pcap")
        hours.append(directory)
    return hours


def node_answers(filer_dir: Path, capture_dir: Path, start: int, end: int) -> tuple[bytes, bytes]:
    """(/data.pcap, /flows) over [start, end] from the node's views, both checked to be 200s."""
    params = {"start_time": str(start), "end_time": str(end)}
    with override_settings(
        ROOT_URLCONF="parsite.urls_node",
        PAR_ROLE="node",
        PAR_CAPTURE_DIR=capture_dir,
        PAR_FILER_DIR=filer_dir,
        PAR_UTC=True,
    ):
        client = Client()
        pcap = client.get("/data.pcap", params)
        assert pcap.status_code == 200, pcap.content
        data = b"".join(pcap.streaming_content)
        assert pcap.get("X-PAR-Damaged") is None
        flows = client.get("/flows", params)
        assert flows.status_code == 200, flows.content
    return data, flows.content


@pytest.mark.parametrize("rule", ["max-age", "keep-free"])
def test_local_retention_keeps_the_archived_captures_until_the_archive_deletes_them(
    tmp_path, archive, weed_s3, monkeypatch, caplog, rule
):
    bucket, options = archive
    filer_dir, capture_dir = tmp_path / "filed", tmp_path / "pcap"
    capture_dir.mkdir()
    hours = three_hours(filer_dir, H0)
    first = H0 + 60
    # the first hour's first capture goes to the archive; its neighbour stays local
    done = tiers.archive_tree(filer_dir, "pcap", options, older_than_hours=0.0, now=first)
    assert done.archived == 1 and not done.errors
    before = node_answers(filer_dir, capture_dir, first, first + 6)
    assert len(before[0]) > 1000
    keys = weed_s3.keys(bucket)
    assert len(keys) == 1

    now = H0 + 3 * 3600 + 1  # the first two hours are more than an hour old, the third is not
    if rule == "max-age":
        deleted = retention.enforce_retention(filer_dir, utc=True, max_age_hours=1, now=now, prefix="pcap")
    else:  # a full disk: everything but the newest hour goes
        monkeypatch.setattr("shutil.disk_usage", lambda path: DiskUsage(100, 99, 1))
        deleted = retention.enforce_retention(filer_dir, utc=True, keep_free=10, prefix="pcap")
    # the first hour's local capture and its index; the second hour's capture, index and summary
    assert deleted.dirs == 2 and deleted.files == 5

    # the first hour keeps what the archive answers for: the record, its index, a summary of it
    assert sorted(p.name for p in hours[0].iterdir()) == [
        f"pcap.{first}.archived",
        f"pcap.{first}.idx",
        "pcap.summary",
    ]
    summary = read_summary(summary_path(hours[0], "pcap"))
    assert summary is not None and list(summary.names) == [f"pcap.{first}"]
    assert not hours[1].exists() and hours[2].exists()
    assert weed_s3.keys(bucket) == keys  # nothing orphaned: the record still names it
    assert node_answers(filer_dir, capture_dir, first, first + 6) == before

    # a later pass finds nothing more to delete there, and says nothing about it
    caplog.set_level(logging.INFO, logger="node.filer")
    caplog.clear()
    again = retention.enforce_retention(filer_dir, utc=True, max_age_hours=1, now=now, prefix="pcap")
    assert again.dirs == 0 and not [m for m in caplog.messages if m.startswith("Deleting")]

    # the archive's retention deletes the object, then the record, index, summary and the hour
    expiring = tiers.ArchiveOptions(bucket, options.prefix, options.endpoint, 10_000.0, max_age_hours=2)
    gone = tiers.archive_tree(filer_dir, "pcap", expiring, now=now)
    assert gone.expired == 1 and not gone.errors
    assert weed_s3.keys(bucket) == []
    assert not hours[0].exists() and hours[2].exists()


@pytest.mark.parametrize(("command", "step"), [("runfiler", "deleting:1"), ("archive", "expiring")])
def test_retention_killed_midway_leaves_nothing_orphaned_when_rerun(
    tmp_path, archive, weed_s3, command, step
):
    bucket, options = archive
    filer_dir, capture_dir = tmp_path / "filed", tmp_path / "pcap"
    capture_dir.mkdir()
    this_hour = int(time.time()) // 3600 * 3600
    hours = three_hours(filer_dir, this_hour - 6 * 3600, third=4)  # 6, 5 and 2 hours before this one
    first = this_hour - 6 * 3600 + 60
    tiers.archive_tree(filer_dir, "pcap", options, older_than_hours=0.0, now=first)
    env = {
        **filer_env(tmp_path, capture_dir, filer_dir, PAR_COMPRESS="none"),
        **{k: v for k, v in s3_env(weed_s3).items() if k.startswith(("AWS_", "PAR_ARCHIVE"))},
        "PAR_ARCHIVE_URL": f"s3://{bucket}/sensor1",
        "PAR_ARCHIVE_AFTER": "10000",
        "PAR_ARCHIVE_MAX_AGE": "3",
    }
    args = ["runfiler", "--max-age", "3"] if command == "runfiler" else ["archive"]
    crashed = manage({**env, "PAR_FILER_CRASH_AT": step}, *args)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = manage(env, *args)
    assert rerun.returncode == 0, rerun.stderr
    if command == "runfiler":
        # the local capture of the first hour is gone, its archived neighbour answers as before
        assert sorted(p.name for p in hours[0].iterdir()) == [
            f"pcap.{first}.archived",
            f"pcap.{first}.idx",
            "pcap.summary",
        ]
        assert not hours[1].exists() and hours[2].exists()
        assert len(weed_s3.keys(bucket)) == 1
        data, _ = node_answers(filer_dir, capture_dir, first, first + 6)
        assert len(data) > 1000
    else:
        # past PAR_ARCHIVE_MAX_AGE: the object, then its record and index; the local neighbour stays
        assert weed_s3.keys(bucket) == []
        assert sorted(p.name for p in hours[0].iterdir()) == [
            f"pcap.{first + 60}",
            f"pcap.{first + 60}.idx",
            "pcap.summary",
        ]
        summary = read_summary(summary_path(hours[0], "pcap"))
        assert summary is not None and list(summary.names) == [f"pcap.{first + 60}"]
