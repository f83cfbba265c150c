"""Selecting packets and listing flows on both roles under gunicorn: the node, and the collector in front of it."""

from __future__ import annotations

import csv
import io
import socket
import struct
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

import pcapgen as g
from engine.index import build_index
from tests.collector.test_live import ADMIN, live_collector, node_env
from tests.engine.test_select import CASES, EMPTY, T0, VLANS, _traffic, times_of, wanted
from tests.servers import Server, gunicorn

S = 10**9
WINDOW = {"start_time": str(T0 // S), "end_time": str(T0 // S + 180)}


def _write(folder: Path) -> list[tuple[int, object]]:
    """Three files of the selection traffic (Ethernet with VLANs, Linux cooked ns, pcapng); two indexed."""
    truths = []
    for n, kind in enumerate(("ether", "sll", "pcapng")):
        base = T0 + n * 60 * S
        path = folder / f"pcap.{base // S}"
        records = []
        for i, (packet, truth) in enumerate(_traffic()):
            ts = base + i * 7000
            records.append((ts, g.ether(packet, VLANS[i % 3]) if kind != "sll" else g.sll(packet)))
            truths.append((ts, truth))
        if kind == "pcapng":
            g.write_pcapng(path, [g.Interface(1, tsresol=9)], [(0, ts, f) for ts, f in records])
        else:
            g.write_pcap(path, records, linktype=1 if kind == "ether" else 113, nanosecond=kind == "sll")
        if n < 2:
            build_index(path)
    return truths


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[Server, Server, list, Server]]:
    base = tmp_path_factory.mktemp("select-live")
    env = node_env(base, "n1")
    truths = _write(Path(env["PAR_CAPTURE_DIR"]))
    small = node_env(base, "n2")
    _write(Path(small["PAR_CAPTURE_DIR"]))
    with (
        gunicorn("node", env) as node,
        gunicorn("node", {**small, "PAR_MAX_ANSWER_BYTES": "2000"}) as small_node,
    ):
        nodes = {"1": node.url.removeprefix("http://"), "2": small_node.url.removeprefix("http://")}
        (base / "collector").mkdir()
        with live_collector(base / "collector", nodes, {ADMIN: ["0"]}) as (collector, _, _):
            yield node, collector, truths, small_node


def both(site, path: str, params: dict, node_id: str = "1") -> tuple[requests.Response, requests.Response]:
    node, collector, _, small = site
    direct = requests.get(f"{(small if node_id == '2' else node).url}{path}", params=params, timeout=60)
    through = requests.get(
        f"{collector.url}{path}", params={**params, "node_id": node_id, "api_key": ADMIN}, timeout=60
    )
    return direct, through


def as_params(given: dict) -> dict:
    return {k: str(v) for k, v in given.items()}


@pytest.mark.parametrize("case", [c for c in CASES if c not in ("nothing", "a v4 network")])
def test_each_selection_is_answered_alike_by_node_and_collector(site, case):
    _, _, truths, _ = site
    direct, through = both(site, "/data.pcap", {**as_params(CASES[case]), **WINDOW})
    assert direct.status_code == through.status_code == 200, direct.text
    assert direct.content == through.content
    expected = [ts for ts, truth in truths if wanted(truth, CASES[case])]
    assert times_of(direct.content) == expected
    assert bool(expected) is (case not in EMPTY)
    for answer in (direct, through):
        assert (
            answer.headers["X-PAR-Window"] == "2023-11-14T22:13:20.000000000Z/2023-11-14T22:16:20.000000000Z"
        )
        assert int(answer.headers["X-PAR-Estimate-Packets"]) >= len(expected)
        assert int(answer.headers["X-PAR-Estimate-Bytes"]) >= len(direct.content)


def test_format_pcapng_names_the_interfaces_after_the_node(site):
    direct, through = both(site, "/data.pcap", {"src_addr": "10.7.0.1", **WINDOW, "format": "pcapng"})
    assert direct.status_code == through.status_code == 200
    assert direct.headers["Content-Type"] == through.headers["Content-Type"] == "application/x-pcapng"
    assert direct.content[:4] == through.content[:4] == b"\x0a\x0d\x0d\x0a"
    assert socket.gethostname().encode() in direct.content
    assert times_of(direct.content) == times_of(through.content)  # the collector names interfaces by node
    assert direct.headers["Content-Disposition"].endswith('.pcapng"')
    _, _, truths, _ = site
    assert times_of(direct.content) == [ts for ts, t in truths if wanted(t, {"src_addr": "10.7.0.1"})]


def test_limits_end_the_answer_at_a_packet_boundary(site):
    _, _, truths, _ = site
    everything = [ts for ts, _ in truths]
    direct, through = both(site, "/data.pcap", {**WINDOW, "limit_packets": "7"})
    assert times_of(direct.content) == times_of(through.content) == everything[:7]
    first_file = {"start_time": str(T0 // S), "end_time": str(T0 // S + 59)}  # Ethernet only: classic pcap
    whole = both(site, "/data.pcap", {**first_file, "limit_packets": "40"})[0].content
    assert whole[:4] == b"\xd4\xc3\xb2\xa1"
    cut = 24 + sum(16 + struct.unpack_from("<I", whole, at + 8)[0] for at in _record_starts(whole)[:25]) + 3
    direct, through = both(site, "/data.pcap", {**first_file, "limit_bytes": str(cut)})
    assert direct.content == through.content == whole[: cut - 3]
    assert len(_record_starts(direct.content)) == 25


def _record_starts(data: bytes) -> list[int]:
    at, starts = 24, []
    while at < len(data):
        starts.append(at)
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    return starts


def test_an_answer_estimated_over_the_maximum_is_a_413_unless_limited(site):
    direct, through = both(site, "/data.pcap", WINDOW, node_id="2")
    assert direct.status_code == through.status_code == 413
    assert "estimated" in direct.json()["error"] and "limit_bytes" in direct.json()["error"]
    assert direct.json() == through.json()
    assert direct.headers["X-PAR-Window"]
    limited, through = both(site, "/data.pcap", {**WINDOW, "limit_bytes": "1500"}, node_id="2")
    assert limited.status_code == through.status_code == 200 and 24 < len(limited.content) <= 1500
    # the estimate comes from the indexes: a narrow question over indexed files passes, the live
    # (unindexed) file counts whole
    first_file = {"start_time": str(T0 // S), "end_time": str(T0 // S + 59)}
    assert both(site, "/data.pcap", {"src_addr": "10.7.0.1", **first_file}, node_id="2")[0].status_code == 200
    assert both(site, "/data.pcap", {"src_addr": "10.7.0.1", **WINDOW}, node_id="2")[0].status_code == 413


@pytest.mark.parametrize(
    ("param", "value"), [("comunity_id", "x"), ("start_time", "Monday"), ("src_addr", "10.1.2.3/8")]
)
def test_bad_input_is_a_400_from_both(site, param, value):
    direct, through = both(site, "/data.pcap", {**WINDOW, param: value})
    assert direct.status_code == through.status_code == 400
    assert param in direct.json()["error"] and direct.json() == through.json()


def test_a_relative_window_is_read_from_now_and_shown(site):
    before = time.time()
    direct, through = both(site, "/data.pcap", {"start_time": "-15m", "src_addr": "10.7.0.1"})
    after = time.time()
    assert direct.status_code == through.status_code == 200
    assert times_of(direct.content) == []
    for answer in (direct, through):
        start, end = (
            datetime.fromisoformat(x[:26] + "+00:00").timestamp()
            for x in answer.headers["X-PAR-Window"].split("/")
        )
        assert before - 1 <= end <= after + 1 and end - start == pytest.approx(900, abs=0.001)


def test_flows_are_listed_alike_by_node_and_collector(site):
    _, _, truths, _ = site
    direct, through = both(site, "/flows", {"src_addr": "10.7.0.1", **WINDOW})
    assert direct.status_code == through.status_code == 200
    mine, theirs = direct.json(), through.json()
    assert mine["window"] == theirs["window"] and theirs["failed"] == {} and not theirs["truncated"]
    assert [{**row, "node": "1"} for row in mine["flows"]] == theirs["flows"]
    assert sum(row["packets"] for row in mine["flows"]) == sum(
        1 for _, t in truths if wanted(t, {"src_addr": "10.7.0.1"})
    )
    icmp = [row for row in mine["flows"] if row["proto"] == 1]
    assert {(r["src_port"], r["dst_port"]) for r in icmp} == {(8, 0), (3, 1)}


def test_flows_as_csv_have_a_header_row_and_rfc_4180_lines(site):
    direct, through = both(site, "/flows", {**WINDOW, "output": "csv", "sort": "-bytes", "limit": "5"})
    assert direct.status_code == through.status_code == 200
    assert through.headers["Content-Type"].startswith("text/csv")
    assert through.text.count("\r\n") == 6 and through.text.endswith("\r\n")
    table = list(csv.DictReader(io.StringIO(through.text)))
    assert list(table[0]) == [
        "node",
        "proto",
        "src_addr",
        "src_port",
        "dst_addr",
        "dst_port",
        "community_id",
    ] + [
        "first",
        "last",
        "packets",
        "bytes",
        "approximate",
    ]
    assert {row["node"] for row in table} == {"1"}
    sizes = [int(row["bytes"]) for row in table]
    assert sizes == sorted(sizes, reverse=True)
    assert {row["node"] for row in csv.DictReader(io.StringIO(direct.text))} == {""}
    assert both(site, "/flows", {**WINDOW, "limit": "5"})[1].json()["truncated"] is True


def test_every_flows_answer_carries_the_window_searched_on_both_roles(site):
    window = "2023-11-14T22:13:20.000000000Z/2023-11-14T22:16:20.000000000Z"
    for params in ({"src_addr": "10.7.0.1", **WINDOW}, {**WINDOW, "output": "csv"}):
        direct, through = both(site, "/flows", params)
        assert direct.status_code == through.status_code == 200
        assert direct.headers["X-PAR-Window"] == through.headers["X-PAR-Window"] == window
    earlier = {"start_time": "1000000000", "end_time": "1000000060"}  # no capture data at all
    direct, through = both(site, "/flows", earlier)
    assert direct.status_code == through.status_code == 404
    assert direct.headers["X-PAR-Window"] == through.headers["X-PAR-Window"]
    assert through.headers["X-PAR-Window"].startswith("2001-09-09T01:46:40.000000000Z/")


def test_a_node_refusing_its_share_as_too_large_makes_the_merged_answer_a_413(site):
    # Node 2's own PAR_MAX_ANSWER_BYTES refuses its share: the merge cannot be whole, so it is not sent.
    _, collector, _, _ = site
    query = {**WINDOW, "node_id": "1,2", "api_key": ADMIN}
    answer = requests.get(f"{collector.url}/data.pcap", params=query, timeout=60)
    assert answer.status_code == 413
    assert answer.json()["error"].startswith("node 2: answer too large")
    limited = requests.get(f"{collector.url}/data.pcap", params={**query, "limit_bytes": "5000"}, timeout=60)
    assert limited.status_code == 200 and limited.headers["X-PAR-Nodes"] == "1,2"
    assert 24 < len(limited.content) <= 5000
