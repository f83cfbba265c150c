"""Nanoseconds and link types kept across nodes: real nodes of mixed precisions and link types, merged by a real collector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import pcapgen as g
from engine.formats import open_capture
from tests.collector.test_live import live_collector, node_env
from tests.collector.test_multinode import ADMIN
from tests.node.test_precision_http import NS, A, B, frame, pcapng_declaring_late, times
from tests.servers import Server, gunicorn

pytestmark = pytest.mark.slow

T0_S = 1_700_000_000
WINDOW = {"src_addr": A, "dst_addr": B, "start_time": str(T0_S), "end_time": str(T0_S + 60)}
# What each node holds, as (time, link type) of its packets: node 1 microsecond Ethernet, node 2
# nanosecond Linux cooked, node 3 a pcapng whose nanosecond interface is declared after its first packet.
EXPECTED = {
    "1": [(ts // 1000 * 1000, 1) for ts in times(T0_S + 1)],
    "2": [(ts + 7, 113) for ts in times(T0_S + 2)],
    "3": [(T0_S * NS, 1)] + [(ts, 1) for ts in times(T0_S + 1)],
}


@pytest.fixture(scope="module")
def collector(tmp_path_factory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("precision-merge")
    envs = {n: node_env(base, f"n{n}") for n in EXPECTED}
    live = {n: Path(envs[n]["PAR_CAPTURE_DIR"]) / f"pcap.{T0_S}" for n in EXPECTED}
    g.write_pcap(live["1"], [(ts, frame(b"1")) for ts, _ in EXPECTED["1"]])
    g.write_pcap(
        live["2"],
        [(ts, g.sll(g.udp(A, 1000, B, 53, b"2" * 40))) for ts, _ in EXPECTED["2"]],
        linktype=113,
        nanosecond=True,
    )
    live["3"].write_bytes(pcapng_declaring_late(T0_S, 1, g.ether))
    with (
        gunicorn("node", envs["1"]) as n1,
        gunicorn("node", envs["2"]) as n2,
        gunicorn("node", envs["3"]) as n3,
    ):
        nodes = {n: s.url.removeprefix("http://") for n, s in zip(EXPECTED, (n1, n2, n3), strict=True)}
        (base / "collector").mkdir()
        with live_collector(base / "collector", nodes, {ADMIN: ["0"]}) as (server, _, _):
            yield server


def merged(collector: Server, nodes: str, tmp_path: Path, **extra: str) -> tuple[str, list[tuple[int, int]]]:
    query = {**WINDOW, "node_id": nodes, "api_key": ADMIN, **extra}
    answer = requests.get(f"{collector.url}/data.pcap", params=query, timeout=60)
    assert answer.status_code == 200, answer.text
    path = tmp_path / "answer"
    path.write_bytes(answer.content)
    with open_capture(path) as capture:
        return answer.headers["Content-Type"], [(r.ts_ns, r.linktype) for r in capture]


@pytest.mark.parametrize("nodes", ["1,3", "2,3", "1,2,3", "3"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_every_packet_keeps_its_time_to_the_ns_and_its_link_type_across_nodes(
    collector, tmp_path, nodes, fmt
):
    content_type, got = merged(collector, nodes, tmp_path, format=fmt)
    expected = sorted((packet for n in nodes.split(",") for packet in EXPECTED[n]), key=lambda p: p[0])
    assert got == expected
    if fmt == "pcapng" or nodes != "3":
        assert content_type == "application/x-pcapng"  # precisions or link types mix, or asked for


@pytest.mark.parametrize("limit", ["1", "4", "9"])
def test_limit_packets_across_mixed_nodes_keeps_the_first_packets_exact(collector, tmp_path, limit):
    _, got = merged(collector, "1,2,3", tmp_path, limit_packets=limit)
    everything = sorted((p for n in EXPECTED for p in EXPECTED[n]), key=lambda p: p[0])
    assert got == everything[: int(limit)]
