"""Hour summaries: a query passes over the hours whose summary says they cannot match, without opening an index."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import requests

import pcapgen
from engine.flow import Selection
from engine.index import build_index, forget_open_indexes
from engine.index import opening as index_read
from engine.index.summary import decode, encode, read_summary, summary_path
from node import filer, store
from tests.node.filing import NS, filer_env, manage, write_capture
from tests.node.test_api_http import env_for
from tests.servers import gunicorn

T = 1432321200  # an hour's first second (2015-05-22 19:00 UTC)
HOST = "10.200.0.7"


def paths(start_ns: int, end_ns: int, **tree) -> list:
    return [file.path for file in store.captures_for_window(start_ns, end_ns, **tree)]


def filed_hours(root, hours: int = 3, per_hour: int = 4) -> tuple[dict, list]:
    """``hours`` hours of filed, indexed captures (``per_hour`` each), summarised as the filer does."""
    capture_dir, filer_dir = root / "pcap", root / "filed"
    capture_dir.mkdir()
    files = []
    for h in range(hours):
        for n in range(per_hour):
            epoch = T + h * 3600 + n * 60
            directory = store.hour_dir(filer_dir, epoch, True)
            directory.mkdir(parents=True, exist_ok=True)
            files.append(write_capture(directory, epoch, seconds=2, pps=20))
            build_index(files[-1])
        filer.summarise(store.hour_dir(filer_dir, T + h * 3600, True), "pcap")
    settled = time.time() - 3600
    for path in files:
        os.utime(path.parent, (settled, settled))  # listings and summaries kept
    tree = {"filer_dir": filer_dir, "capture_dir": capture_dir, "prefix": "pcap", "utc": True}
    return tree, files


def host_capture(directory, epoch: int, host: str = HOST):
    """A filed, indexed capture of one flow from ``host`` (five packets from ``epoch``)."""
    path = directory / f"pcap.{epoch}"
    frame = pcapgen.ether(pcapgen.tcp(host, 40000, "192.0.2.80", 443, b"x" * 100))
    pcapgen.write_pcap(path, [(epoch * NS + k * NS, frame) for k in range(5)])
    build_index(path)
    return path


def opened_indexes(monkeypatch) -> list[str]:
    opened: list[str] = []
    real = index_read.FlowIndex.__init__

    def counting(self, path, data=None):
        opened.append(os.fspath(path))
        real(self, path, data)

    monkeypatch.setattr(index_read.FlowIndex, "__init__", counting)
    forget_open_indexes()
    return opened


def test_a_host_in_one_hour_opens_only_that_hours_indexes(tmp_path, monkeypatch):
    tree, files = filed_hours(tmp_path)
    flows = list(read_summary(summary_path(files[0].parent, "pcap")).v4[:1])
    assert flows, "the summary holds the hour's addresses"
    first_host = ".".join(str(b) for b in int(flows[0]).to_bytes(4, "big"))
    opened = opened_indexes(monkeypatch)
    window = (T * NS, (T + 3 * 3600) * NS)

    found = store.captures_for_window(*window, selection=Selection(*window, src=first_host), **tree)
    in_first_hour = [f for f in found if not f.excluded]
    assert {f.path.parent for f in in_first_hour} <= {files[0].parent}
    assert all(path.startswith(str(files[0].parent)) for path in opened)

    # A host never seen: no index opened, one file handed back as excluded (the window has data).
    opened.clear()
    none = store.captures_for_window(*window, selection=Selection(*window, src=HOST), **tree)
    assert opened == [] and len(none) == 1 and none[0].excluded


def test_without_a_summary_every_file_is_searched(tmp_path):
    tree, files = filed_hours(tmp_path, hours=2)
    for hour in {f.parent for f in files}:
        summary_path(hour, "pcap").unlink()
        os.utime(hour, (time.time() - 3600,) * 2)
    window = (T * NS, (T + 2 * 3600) * NS)
    found = store.captures_for_window(*window, selection=Selection(*window, src=HOST), **tree)
    assert [f.path for f in found] == files and not any(f.excluded for f in found)


def test_inside_a_matching_hour_only_the_files_holding_the_host_have_their_index_opened(
    tmp_path, monkeypatch
):
    tree, files = filed_hours(tmp_path, hours=2, per_hour=6)
    hour = files[0].parent
    held = host_capture(hour, T + 30 * 60)
    filer.summarise(hour, "pcap")
    os.utime(hour, (time.time() - 3600,) * 2)
    opened = opened_indexes(monkeypatch)
    window = (T * NS, (T + 2 * 3600) * NS)

    found = store.captures_for_window(*window, selection=Selection(*window, src=HOST), **tree)
    assert [f.path for f in found] == [held] and not found[0].excluded
    assert opened == [f"{held}.idx"]  # not the 11 other files' (6 of them in the same hour)

    # The same for the ports only that file holds, and for the host asked as the other end.
    opened.clear()
    forget_open_indexes()
    found = store.captures_for_window(
        *window, selection=Selection(*window, src_port=40000, dst_port=443), **tree
    )
    assert held in [f.path for f in found] and len(opened) < len(files)
    opened.clear()
    forget_open_indexes()
    found = store.captures_for_window(*window, selection=Selection(*window, dst=HOST + "/32"), **tree)
    assert [f.path for f in found] == [held] and opened == [f"{held}.idx"]


def test_a_file_added_to_an_hour_after_its_summary_is_searched_until_reindex_names_it(tmp_path, monkeypatch):
    tree, files = filed_hours(tmp_path, hours=1, per_hour=4)
    hour = files[0].parent
    before = read_summary(summary_path(hour, "pcap"))
    added = host_capture(hour, T + 50 * 60)  # filed by hand, or by a filer stopped before its summary
    window = (T * NS, (T + 3600) * NS)
    found = store.captures_for_window(*window, selection=Selection(*window, src=HOST), **tree)
    assert [f.path for f in found] == [added]
    assert read_summary(summary_path(hour, "pcap")).names == before.names

    env = filer_env(tmp_path, tree["capture_dir"], tree["filer_dir"])
    run = manage(env, "reindex", str(tree["filer_dir"]))
    assert run.returncode == 0, run.stderr
    assert added.name in read_summary(summary_path(hour, "pcap")).names
    opened = opened_indexes(monkeypatch)
    found = store.captures_for_window(*window, selection=Selection(*window, src=HOST), **tree)
    assert [f.path for f in found] == [added] and opened == [f"{added}.idx"]


def test_a_summary_added_to_pass_by_pass_is_the_one_made_at_once(tmp_path):
    tree, files = filed_hours(tmp_path, hours=1, per_hour=1)
    hour = files[0].parent
    for n in range(1, 5):  # a filer pass per new file, each adding it to the summary
        write_capture(hour, T + n * 60, seconds=2, pps=20)
        build_index(hour / f"pcap.{T + n * 60}")
        store.refresh_summary(hour, "pcap")
    passes = summary_path(hour, "pcap").read_bytes()
    store.refresh_summary(hour, "pcap", rebuild=True)
    assert summary_path(hour, "pcap").read_bytes() == passes
    summary = decode(passes)
    assert encode(summary) == passes and len(summary.names) == 5
    window = (T * NS, (T + 3600) * NS)
    for n, name in enumerate(summary.names):  # each file's own first address leads to it
        own = Selection(*window, src=address_of(hour / name))
        assert hour / name in [f.path for f in store.captures_for_window(*window, selection=own, **tree)]
        assert summary.matching(own)[n]


def address_of(capture) -> str:
    from engine.index import open_index

    a4 = open_index(capture).columns["a4"]
    return ".".join(str(b) for b in int(np.asarray(a4)[0]).to_bytes(4, "big"))


@pytest.mark.parametrize("damage", ["flip", "version 1", "cut"])
def test_a_damaged_or_other_version_summary_is_not_used(tmp_path, damage):
    tree, files = filed_hours(tmp_path, hours=1)
    where = summary_path(files[0].parent, "pcap")
    data = bytearray(where.read_bytes())
    if damage == "flip":
        data[-3] ^= 0xFF
    elif damage == "cut":
        del data[-5:]
    else:  # a summary written before per-file keys: not used until rewritten
        data[8:12] = (1).to_bytes(4, "little")
    where.write_bytes(bytes(data))
    assert read_summary(where) is None
    window = (T * NS, (T + 3600) * NS)
    found = store.captures_for_window(*window, selection=Selection(*window, src=HOST), **tree)
    assert [f.path for f in found] == files
    filer.summarise(files[0].parent, "pcap")  # the filer's next pass into the hour makes it anew
    assert read_summary(where) is not None


def test_the_filer_and_reindex_keep_the_summary_current(tmp_path):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    now = int(time.time()) // 3600 * 3600 - 7200
    for n in range(3):
        write_capture(capture_dir, now + n * 60, seconds=2, pps=20)
    env = filer_env(tmp_path, capture_dir, filer_dir)
    run = manage(env, "runfiler")
    assert run.returncode == 0, run.stderr
    hour = store.hour_dir(filer_dir, now, True)
    summary = read_summary(summary_path(hour, "pcap"))
    assert summary is not None and list(summary.names) == [f"pcap.{now}", f"pcap.{now + 60}"]

    # reindex makes it anew where it rebuilds an index
    summary_path(hour, "pcap").write_bytes(b"junk")
    (hour / f"pcap.{now}.idx").unlink()
    run = manage(env, "reindex", str(filer_dir))
    assert run.returncode == 0, run.stderr
    again = read_summary(summary_path(hour, "pcap"))
    assert again is not None and again.names == summary.names


@pytest.mark.slow
def test_the_node_answers_the_same_with_and_without_summaries(tmp_path):
    tree, files = filed_hours(tmp_path)
    window = {"start_time": str(T), "end_time": str(T + 3 * 3600 - 1)}
    summary = read_summary(summary_path(files[-1].parent, "pcap"))
    last_hour_host = ".".join(str(b) for b in int(summary.v4[0]).to_bytes(4, "big"))
    asks = [
        ("/data.pcap", {"src_addr": HOST}),
        ("/data.pcap", {"src_addr": last_hour_host}),
        ("/flows", {"src_addr": HOST}),
        ("/flows", {"src_addr": last_hour_host}),
    ]
    env = env_for(tmp_path, tree["capture_dir"], tree["filer_dir"], PAR_MAX_WINDOW=str(4 * 3600))

    def answers() -> list[tuple[int, bytes]]:
        with gunicorn("node", env) as node:
            return [
                (r.status_code, r.content)
                for r in (
                    requests.get(f"{node.url}{path}", params={**params, **window}, timeout=30)
                    for path, params in asks
                )
            ]

    summarised = answers()
    for hour in {f.parent for f in files}:
        summary_path(hour, "pcap").unlink()
    assert answers() == summarised
    assert summarised[0][0] == 200 and len(summarised[0][1]) == 24  # data in the window, none selected
    assert summarised[1][0] == 200 and len(summarised[1][1]) > 24
    assert b'"flows":[]' in summarised[2][1].replace(b" ", b"")


def test_with_the_trees_stamp_a_week_is_listed_from_memory_until_the_tree_changes(tmp_path, monkeypatch):
    tree, files = filed_hours(tmp_path, hours=3, per_hour=2)
    store.bump_tree_stamp(tree["filer_dir"])
    window = (T * NS, (T + 3 * 3600) * NS)
    paths(*window, **tree)
    looked: list[str] = []
    real = os.lstat
    monkeypatch.setattr(
        os, "lstat", lambda path, *a, **k: looked.append(os.fspath(path)) or real(path, *a, **k)
    )
    assert paths(*window, **tree) == files
    assert not [p for p in looked if p.startswith(str(tree["filer_dir"]))]

    # A file filed by the filer (which rewrites the stamp) is seen at once.
    hour = files[0].parent
    added = write_capture(hour, T + 30 * 60, seconds=2, pps=20)
    build_index(added)
    store.bump_tree_stamp(tree["filer_dir"])
    assert added in paths(*window, **tree)
