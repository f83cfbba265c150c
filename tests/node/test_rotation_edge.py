"""Packets captured just before a rotation land in the file named after it: a window ending there finds them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from engine.index import build_index
from node import store
from pcapgen import ether, pcap_bytes, tcp, write_pcap
from tests.node.test_api_http import env_for
from tests.servers import gunicorn

NS = 1_000_000_000
T = 1432321200  # the rotation second: the second file is named after it
A, A_PORT, B, B_PORT = "10.0.0.1", 40000, "10.0.0.2", 80
FLOW = {"src_addr": A, "src_port": str(A_PORT), "dst_addr": B, "dst_port": str(B_PORT)}


def paths(start_ns: int, end_ns: int, **tree) -> list:
    return [file.path for file in store.captures_for_window(start_ns, end_ns, **tree)]


def frames(first_ns: int, count: int, step_ns: int, seq: int = 0) -> list[tuple[int, bytes]]:
    return [
        (first_ns + i * step_ns, ether(tcp(A, A_PORT, B, B_PORT, b"x" * 40, seq=seq + i)))
        for i in range(count)
    ]


def rotated(
    directory: Path, *, filed_root: Path | None = None, index: bool = True
) -> list[tuple[int, bytes]]:
    """``pcap.<T-60>`` up to T-0.5 s, then ``pcap.<T>`` from T-0.4 s (libpcap's last batch before the
    rotation) to T+10 s; filed into their hour when ``filed_root`` is given. Returns the second file's records."""
    before = frames((T - 60) * NS, 50, NS)  # T-60 .. T-11
    gap = frames(T * NS - 400_000_000, 4, 100_000_000, seq=100)  # T-0.4 .. T-0.1
    after = frames(T * NS + 500_000_000, 10, NS, seq=200)
    for epoch, records in ((T - 60, before), (T, gap + after)):
        target = store.hour_dir(filed_root, epoch, True) if filed_root is not None else directory
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"pcap.{epoch}"
        write_pcap(path, records)
        os.utime(path, ns=(records[-1][0], records[-1][0]))
        if index:
            build_index(path)
    return gap


@pytest.mark.parametrize("index", [True, False], ids=["indexed", "unindexed"])
def test_a_window_ending_before_a_files_name_finds_the_packets_it_holds(tmp_path, index):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    rotated(capture_dir, filed_root=filer_dir, index=index)
    tree = {"filer_dir": filer_dir, "capture_dir": capture_dir, "prefix": "pcap", "utc": True}
    second = store.hour_dir(filer_dir, T, True) / f"pcap.{T}"

    # The window ends 0.05 s before the name of the file holding its packets.
    found = paths(T * NS - 450_000_000, T * NS - 50_000_000, **tree)
    assert found == [second]
    # A window that starts in the gap, too.
    assert second in paths(T * NS - 200_000_000, (T + 2) * NS, **tree)
    # A window between the two files' packets lists neither.
    assert paths((T - 10) * NS, (T - 1) * NS, **tree) == []


def test_the_node_answers_and_lists_packets_from_just_before_a_rotation(tmp_path):
    capture_dir, filer_dir = tmp_path / "capture", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    gap = rotated(capture_dir, filed_root=filer_dir)
    # The live file, named later, keeps the capture directory as a running node's is.
    write_pcap(capture_dir / f"pcap.{T + 60}", frames((T + 60) * NS, 2, NS, seq=300))
    params = {**FLOW, "start_time": f"{T - 0.45:.9f}", "end_time": f"{T - 0.05:.9f}"}
    with gunicorn("node", env_for(tmp_path, capture_dir, filer_dir)) as node:
        pcap = requests.get(f"{node.url}/data.pcap", params=params, timeout=30)
        flows = requests.get(f"{node.url}/flows", params=params, timeout=30)
    assert pcap.status_code == 200, pcap.text
    assert pcap.content == pcap_bytes(gap)
    assert flows.status_code == 200, flows.text
    rows = flows.json()["flows"]
    # Counts cover the flow in the files overlapping the window: the second file's 14 packets.
    assert len(rows) == 1 and rows[0]["packets"] == 14 and rows[0]["approximate"] is True
