"""The filer brings older hours' summaries up to date by itself (after an upgrade, or when one is
missing, damaged or older than its indexes), newest first, a budget a pass, after filing."""

from __future__ import annotations

import os
import signal

from engine.index.summary import read_summary, summary_path
from node import catchup, filer, filerstats, store
from node.filer import FilerOptions
from tests.node.filing import filer_env, manage, write_capture
from tests.node.test_summary import T, filed_hours


def spoil(hour, how: str) -> None:
    """Make the hour's summary one the queries do not use (or, "old", one older than an index)."""
    where = summary_path(hour, "pcap")
    if how == "missing":
        where.unlink()
    elif how == "version 1":  # a summary written before this version
        data = bytearray(where.read_bytes())
        data[8:12] = (1).to_bytes(4, "little")
        where.write_bytes(bytes(data))
    elif how == "damaged":
        data = bytearray(where.read_bytes())
        data[-3] ^= 0xFF
        where.write_bytes(bytes(data))
    else:  # an index rebuilt after the summary was written
        index = next(hour.glob("pcap.*.idx"))
        earlier = os.stat(index).st_mtime_ns - 10 * 10**9
        os.utime(where, ns=(earlier, earlier))


def options(tmp_path, **budget) -> FilerOptions:
    (tmp_path / "data").mkdir(exist_ok=True)
    return FilerOptions(tmp_path / "pcap", tmp_path / "filed", tmp_path / "data", jobs=1, **budget)


def usable(hour) -> bool:
    return read_summary(summary_path(hour, "pcap")) is not None and catchup.is_current(hour, "pcap")


def test_filer_passes_rewrite_stale_summaries_newest_first_within_their_budget(tmp_path):
    _, files = filed_hours(tmp_path, hours=6, per_hour=2)
    hours = sorted({path.parent for path in files})
    for hour, how in zip(hours, ["missing", "version 1", "damaged", "old"], strict=False):
        spoil(hour, how)
    assert [usable(hour) for hour in hours] == [False] * 4 + [True] * 2
    new = write_capture(tmp_path / "pcap", T + 10 * 3600, seconds=2, pps=20)
    write_capture(tmp_path / "pcap", T + 10 * 3600 + 60, seconds=2, pps=20)  # still being written

    first = filer.run_pass(options(tmp_path, summary_hours=2))
    assert first.files == 1 and not new.exists()  # filing comes first, whatever the backlog
    assert usable(store.hour_dir(tmp_path / "filed", T + 10 * 3600, True))
    assert first.summaries is not None and first.summaries.rewritten == 2 and not first.summaries.done
    assert [usable(hour) for hour in hours] == [False, False, True, True, True, True]  # newest first
    assert filerstats.read_stats(tmp_path / "data").summaries_catching_up == 1

    second = filer.run_pass(options(tmp_path, summary_hours=2))
    assert second.summaries is not None and second.summaries.rewritten == 2 and second.summaries.done
    assert all(usable(hour) for hour in hours)
    stats = filerstats.read_stats(tmp_path / "data")
    assert (stats.summaries_rewritten, stats.summaries_catching_up) == (4, 0)

    # Done: a pass no longer looks at the hours, until a summary the filer writes fails.
    third = filer.run_pass(options(tmp_path, summary_hours=2))
    assert third.summaries is not None and third.summaries.done and third.summaries.checked == 0
    spoil(hours[0], "missing")
    catchup.restart(tmp_path / "data")
    fourth = filer.run_pass(options(tmp_path, summary_hours=2))
    assert fourth.summaries is not None and fourth.summaries.rewritten == 1 and usable(hours[0])


def test_a_large_backlog_does_not_delay_filing(tmp_path):
    _, files = filed_hours(tmp_path, hours=30, per_hour=1)
    hours = sorted({path.parent for path in files})
    for hour in hours:
        spoil(hour, "missing")
    new = write_capture(tmp_path / "pcap", T + 40 * 3600, seconds=2, pps=20)
    write_capture(tmp_path / "pcap", T + 40 * 3600 + 60, seconds=2, pps=20)  # still being written
    summary = filer.run_pass(options(tmp_path))  # the default budget: 24 hours a pass
    assert summary.files == 1 and not new.exists()
    new_summary = summary_path(store.hour_dir(tmp_path / "filed", T + 40 * 3600, True), "pcap")
    rewritten = [summary_path(hour, "pcap") for hour in hours if summary_path(hour, "pcap").exists()]
    assert summary.summaries is not None and summary.summaries.rewritten == len(rewritten) == 24
    assert rewritten == [summary_path(hour, "pcap") for hour in hours[6:]]  # the newest 24
    # The new capture's hour was summarised before any older hour was looked at.
    assert new_summary.stat().st_mtime_ns <= min(path.stat().st_mtime_ns for path in rewritten)

    # A CPU budget spent at once still makes progress: one hour a pass.
    tight = filer.run_pass(options(tmp_path, summary_cpu_s=0.0))
    assert tight.summaries is not None and tight.summaries.rewritten == 1
    assert summary_path(hours[5], "pcap").exists() and not summary_path(hours[4], "pcap").exists()
    last = filer.run_pass(options(tmp_path))
    assert last.summaries is not None and last.summaries.done and last.summaries.rewritten == 5
    assert all(usable(hour) for hour in hours)


def test_a_cron_pass_after_an_upgrade_rewrites_version_1_summaries_and_logs_it(tmp_path):
    _, files = filed_hours(tmp_path, hours=3, per_hour=2)
    hours = sorted({path.parent for path in files})
    for hour in hours:
        spoil(hour, "version 1")
    (tmp_path / "data").mkdir()
    env = filer_env(tmp_path, tmp_path / "pcap", tmp_path / "filed")
    run = manage(env, "runfiler")
    assert run.returncode == 0, run.stderr
    assert all(usable(hour) for hour in hours)
    log = run.stderr
    assert "Summaries: 3 rewritten" in log and "every hour is up to date" in log, log
    again = manage(env, "runfiler")
    assert again.returncode == 0 and "Summaries:" not in again.stderr


def test_a_filer_killed_while_rewriting_summaries_finishes_them_on_its_next_pass(tmp_path):
    _, files = filed_hours(tmp_path, hours=4, per_hour=1)
    hours = sorted({path.parent for path in files})
    for hour in hours:
        spoil(hour, "version 1")
    # What a kill while writing a summary leaves beside the old one.
    left = hours[1] / ".pcap.summary.4242.tmp"
    left.write_bytes(b"half a summary")
    (tmp_path / "data").mkdir()
    env = filer_env(tmp_path, tmp_path / "pcap", tmp_path / "filed")
    killed = manage({**env, "PAR_FILER_CRASH_AT": "summarised:2"}, "runfiler")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [usable(hour) for hour in hours] == [False, False, True, True]  # newest first, two done
    rerun = manage(env, "runfiler")
    assert rerun.returncode == 0, rerun.stderr
    assert all(usable(hour) for hour in hours) and not left.exists()
    assert catchup.read_state(tmp_path / "data")["done"] is True
