"""Damaged capture files under a real node (gunicorn): the window answers from everything readable."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import requests

import pcapgen as g
from engine.index import build_index
from node.store import hour_dir
from tests.engine.conftest import pcap_records
from tests.engine.test_damage import GOOD, damaged_pcap, damaged_pcapng, flow_times, records
from tests.servers import gunicorn

pytestmark = pytest.mark.slow

T0_S = 1_700_000_000  # the engine tests' T0, in seconds
QUERY = {
    "src_addr": "10.0.0.1",
    "src_port": "1000",
    "dst_addr": "10.0.0.2",
    "dst_port": "53",
    "start_time": str(T0_S),
    "end_time": str(T0_S + 60),
}
LIVE_S = T0_S + 300  # the live file's epoch, alone in its window
LIVE_NG_S = T0_S + 400  # a live pcapng's, alone in its window
DAMAGED = {  # file name -> (bytes, offset of the damage)
    f"pcap.{T0_S + 1}": damaged_pcap("corrupted record header"),
    f"pcap.{T0_S + 2}": damaged_pcapng(),
    f"pcap.{T0_S + 3}": damaged_pcap("truncated mid-record"),
}


def damaged_node_env(base: Path) -> dict[str, str]:
    """A node's tree with one healthy filed file and three damaged ones, indexed as the filer does."""
    capture, filed = base / "capture", base / "filed"
    capture.mkdir(parents=True)
    hour = hour_dir(filed, T0_S, utc=True)
    hour.mkdir(parents=True)
    g.write_pcap(hour / f"pcap.{T0_S}", records(0))
    for name, (data, _) in DAMAGED.items():
        (hour / name).write_bytes(data)
    for path in hour.iterdir():
        build_index(path)
    # Alone in a later window: a file damaged at its first record, nothing readable.
    unreadable = hour / f"pcap.{T0_S + 600}"
    data = bytearray(g.pcap_bytes([(ts + 600 * 10**9, frame) for ts, frame in records(0)]))
    data[24 + 8 : 24 + 12] = b"\xff\xff\xff\x7f"
    unreadable.write_bytes(bytes(data))
    build_index(unreadable)
    # Alone in a later window, without an index (the live file): damaged after GOOD records.
    data, _ = damaged_pcap("corrupted record header")
    live = capture / f"pcap.{LIVE_S}"
    live.write_bytes(_shifted(data, LIVE_S - T0_S))
    os.utime(live, (LIVE_S + 1, LIVE_S + 1))  # its span ends there: later windows do not list it
    # The same in pcapng, damaged after GOOD packet blocks.
    blocks = [(0, ts + (LIVE_NG_S - T0_S) * 10**9, frame) for ts, frame in records(100)]
    at = len(g.pcapng_bytes([1], blocks[:GOOD]))
    data = bytearray(g.pcapng_bytes([1], blocks))
    data[at + 4 : at + 8] = struct.pack("<I", 7)
    live_ng = capture / f"pcap.{LIVE_NG_S}"
    live_ng.write_bytes(bytes(data))
    os.utime(live_ng, (LIVE_NG_S + 1, LIVE_NG_S + 1))
    return {
        "PAR_DATA_DIR": str(base),
        "PAR_CAPTURE_DIR": str(capture),
        "PAR_FILER_DIR": str(filed),
        "PAR_MAX_WINDOW": "3600",
        "DATABASE_URL": f"sqlite:///{base / 'db.sqlite3'}",
    }


def _shifted(data: bytes, seconds: int) -> bytes:
    """A classic pcap's records ``seconds`` later (walked up to its damage; the rest left as it is)."""
    out, at = bytearray(data), 24
    while at + 16 <= len(out):
        secs, _, caplen, _ = struct.unpack_from("<IIII", out, at)
        if caplen > len(out):
            break
        struct.pack_into("<I", out, at, secs + seconds)
        at += 16 + caplen
    return bytes(out)


def expected_times() -> list[int]:
    return sorted(flow_times(0, 10) + flow_times(100, GOOD) * len(DAMAGED))


def answer_times(content: bytes) -> list[int]:
    return sorted(secs * 10**9 + frac * 1000 for secs, frac, _, _ in pcap_records(content)[1])


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with gunicorn("node", damaged_node_env(tmp_path_factory.mktemp("damaged"))) as server:
        yield server


def test_a_window_with_damaged_files_answers_from_everything_readable_and_names_them(node):
    answer = requests.get(f"{node.url}/data.pcap", QUERY, timeout=30)
    assert answer.status_code == 200
    assert answer_times(answer.content) == expected_times()
    assert sorted(answer.headers["X-PAR-Damaged"].split(", ")) == sorted(DAMAGED)
    log = node.log()
    for name, (_, at) in DAMAGED.items():
        lines = [line for line in log.splitlines() if name in line and f"at byte offset {at}" in line]
        assert len(lines) == 1, log[-3000:]


def test_a_window_without_damage_has_no_damage_header(node):
    answer = requests.get(f"{node.url}/data.pcap", {**QUERY, "end_time": str(T0_S)}, timeout=30)
    assert answer.status_code == 200 and "X-PAR-Damaged" not in answer.headers


def test_a_window_where_nothing_can_be_read_is_still_a_503(node):
    window = {"start_time": str(T0_S + 600), "end_time": str(T0_S + 660)}
    answer = requests.get(f"{node.url}/data.pcap", {**QUERY, **window}, timeout=30)
    assert answer.status_code == 503
    assert answer.json() == {"error": "cannot read capture data: a capture file is damaged"}


def test_flows_name_the_damaged_files_as_data_pcap_does(node):
    listing = requests.get(f"{node.url}/flows", {**QUERY, "output": "csv"}, timeout=30)
    pcap = requests.get(f"{node.url}/data.pcap", QUERY, timeout=30)
    assert listing.status_code == pcap.status_code == 200
    assert sorted(listing.headers["X-PAR-Damaged"].split(", ")) == sorted(DAMAGED)
    assert listing.headers["X-PAR-Damaged"] == pcap.headers["X-PAR-Damaged"]
    assert listing.text.count("\r\n") > 1  # the readable files' flows are still listed
    clean = requests.get(f"{node.url}/flows", {**QUERY, "end_time": str(T0_S)}, timeout=30)
    assert clean.status_code == 200 and "X-PAR-Damaged" not in clean.headers


def test_head_names_the_damage_the_indexes_record(node):
    head = requests.head(f"{node.url}/data.pcap", params=QUERY, timeout=30)
    get = requests.get(f"{node.url}/data.pcap", QUERY, timeout=30)
    assert head.status_code == 200
    assert head.headers["X-PAR-Damaged"] == get.headers["X-PAR-Damaged"]
    clean = requests.head(f"{node.url}/data.pcap", params={**QUERY, "end_time": str(T0_S)}, timeout=30)
    assert clean.status_code == 200 and "X-PAR-Damaged" not in clean.headers


@pytest.mark.parametrize("epoch", [LIVE_S, LIVE_NG_S])
def test_flows_list_what_a_damaged_file_without_an_index_holds_before_its_damage(node, epoch):
    window = {"start_time": str(epoch), "end_time": str(epoch + 60)}
    listing = requests.get(f"{node.url}/flows", window, timeout=30)
    pcap = requests.get(f"{node.url}/data.pcap", {**QUERY, **window}, timeout=30)
    assert listing.status_code == pcap.status_code == 200
    assert listing.headers["X-PAR-Damaged"] == pcap.headers["X-PAR-Damaged"] == f"pcap.{epoch}"
    rows = {(r["src_addr"], r["src_port"], r["dst_addr"], r["dst_port"]): r for r in listing.json()["flows"]}
    # The records before the damage, every other one the flow's: as /data.pcap serves them.
    assert set(rows) == {("10.0.0.1", 1000, "10.0.0.2", 53), ("10.9.9.9", 7, "10.9.9.8", 7)}
    assert rows["10.0.0.1", 1000, "10.0.0.2", 53]["packets"] == len(answer_times(pcap.content)) == 3
    assert rows["10.9.9.9", 7, "10.9.9.8", 7]["packets"] == 2
    assert f"pcap.{epoch}" in node.log() and "damage" in node.log()
