"""Limits that hold (SPEC "Selecting packets"), through real nodes and a real collector under gunicorn.

``limit_bytes`` never lifts PAR_MAX_ANSWER_BYTES (the answer is cut at the smaller), an estimate
takes ``limit_packets`` into account, a parameter given empty is a 400 naming it, and an estimate
that counts a file without an index whole says so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.collector.test_live import live_collector
from tests.collector.test_multinode import ADMIN
from tests.engine.conftest import pcap_records
from tests.node.captures import FILE_SECONDS, T0, make_tree
from tests.servers import Server, gunicorn

pytestmark = pytest.mark.slow

NODE_MAX = 1_900_000  # node 1's PAR_MAX_ANSWER_BYTES: its whole window is more
COLLECTOR_MAX = 2_000_000  # the collector's: node 2's whole window is more, and node 2 allows it
EVERYTHING = {"start_time": str(T0), "end_time": str(T0 + 3 * FILE_SECONDS)}
LIVE = f"pcap.{T0 + 2 * FILE_SECONDS}"  # each node's last file: live, without an index


def record_ends(data: bytes) -> list[int]:
    ends, at = [24], 24
    for _, _, _, frame in pcap_records(data)[1]:
        at += 16 + len(frame)
        ends.append(at)
    return ends


def cut(whole: bytes, size: int) -> bytes:
    """``whole`` ended before ``size`` bytes are exceeded, at a record boundary."""
    return whole[: max(end for end in record_ends(whole) if end <= size)]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[dict[str, Server]]:
    """Two nodes of three one-minute files (about 2.9 MB each, the last live) and a collector."""
    servers: dict[str, Server] = {}
    base = tmp_path_factory.mktemp("limits-hold")
    trees = {n: make_tree(base / f"n{n}", packets=4000) for n in ("1", "2")}
    env = {n: {**trees[n].env(), "PAR_DATA_DIR": str(base / f"n{n}")} for n in trees}
    env["1"]["PAR_MAX_ANSWER_BYTES"] = str(NODE_MAX)
    with gunicorn("node", env["1"]) as one, gunicorn("node", env["2"]) as two:
        servers.update({"1": one, "2": two})
        nodes = {n: s.url.removeprefix("http://") for n, s in servers.items()}
        (base / "collector").mkdir()
        with live_collector(
            base / "collector", nodes, {ADMIN: ["0"]}, PAR_MAX_ANSWER_BYTES=str(COLLECTOR_MAX)
        ) as (collector, _, _):
            servers["collector"] = collector
            yield servers


def node_get(
    site, node: str, params: dict, method: str = "GET", path: str = "data.pcap"
) -> requests.Response:
    return requests.request(method, f"{site[node].url}/{path}", params=params, timeout=60)


def collector_get(site, params: dict, method: str = "GET", path: str = "data.pcap") -> requests.Response:
    query = {"api_key": ADMIN, **params}
    return requests.request(method, f"{site['collector'].url}/{path}", params=query, timeout=60)


def whole(site) -> bytes:
    """Either node's whole window (the same files), as node 2 sends it: its maximum is not in the way."""
    answer = node_get(site, "2", EVERYTHING)
    assert answer.status_code == 200
    return answer.content


# ---------------------------------------------------------------- the node


def test_without_limits_the_broad_window_is_over_the_nodes_maximum(site):
    answer = node_get(site, "1", EVERYTHING)
    assert answer.status_code == 413 and f"PAR_MAX_ANSWER_BYTES ({NODE_MAX})" in answer.json()["error"]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_limit_packets_is_taken_into_the_estimate_a_few_packets_are_never_too_large(site, method):
    answer = node_get(site, "1", {**EVERYTHING, "limit_packets": "7"}, method)
    assert answer.status_code == 200
    assert answer.headers["X-PAR-Estimate-Packets"] == "7"
    assert int(answer.headers["X-PAR-Estimate-Bytes"]) <= NODE_MAX
    if method == "GET":
        assert len(pcap_records(answer.content)[1]) == 7


def test_limit_bytes_over_the_nodes_maximum_is_cut_at_the_maximum(site):
    answer = node_get(site, "1", {**EVERYTHING, "limit_bytes": str(10**12)})
    assert answer.status_code == 200
    everything = whole(site)
    assert len(everything) > NODE_MAX
    assert answer.content == cut(everything, NODE_MAX)
    assert int(answer.headers["X-PAR-Estimate-Bytes"]) == NODE_MAX


def test_limit_bytes_under_the_maximum_still_ends_there(site):
    answer = node_get(site, "1", {**EVERYTHING, "limit_bytes": "100000"})
    assert answer.status_code == 200 and answer.content == cut(whole(site), 100_000)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("data.pcap", "src_addr"),
        ("data.pcap", "src_port"),
        ("flows", "dst_addr"),
        ("data.pcap", "limit_bytes"),
    ],
)
def test_a_parameter_given_empty_is_a_400_naming_it_not_every_flow(site, path, name):
    answer = node_get(site, "2", {**EVERYTHING, name: ""}, path=path)
    assert answer.status_code == 400
    assert answer.json() == {"error": f"empty parameter: {name} (leave out a parameter not wanted)"}
    both = node_get(site, "2", {**EVERYTHING, "src_addr": "", "src_port": " "}, path=path)
    assert both.status_code == 400 and "src_addr, src_port" in both.json()["error"]


def test_an_estimate_counting_a_file_without_an_index_whole_names_it(site):
    live = node_get(site, "2", EVERYTHING, "HEAD")
    assert live.status_code == 200 and live.headers["X-PAR-Estimate-Unindexed"] == LIVE
    filed = node_get(site, "2", {**EVERYTHING, "end_time": str(T0 + FILE_SECONDS - 1)}, "HEAD")
    assert filed.status_code == 200 and "X-PAR-Estimate-Unindexed" not in filed.headers


# ---------------------------------------------------------------- the collector


def test_the_largest_limit_bytes_across_nodes_is_an_answer_not_a_400(site):
    answer = collector_get(site, {**EVERYTHING, "node_id": "1,2", "limit_bytes": str(2**63 - 1)})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-PAR-Nodes"] == "1,2"
    assert COLLECTOR_MAX - 70_000 < len(answer.content) <= COLLECTOR_MAX
    assert answer.headers["X-PAR-Estimate-Unindexed"] == f"1={LIVE}, 2={LIVE}"


def test_limit_bytes_over_the_collectors_maximum_is_cut_there_for_one_node_too(site):
    answer = collector_get(site, {**EVERYTHING, "node_id": "2", "limit_bytes": str(10**12)})
    assert answer.status_code == 200, answer.text
    assert answer.content == cut(whole(site), COLLECTOR_MAX)
    assert answer.headers["X-PAR-Estimate-Unindexed"] == LIVE


def test_limit_packets_over_several_nodes_is_never_too_large(site):
    assert collector_get(site, {**EVERYTHING, "node_id": "1,2"}).status_code == 413
    answer = collector_get(site, {**EVERYTHING, "node_id": "1,2", "limit_packets": "7"})
    assert answer.status_code == 200, answer.text
    assert len(pcap_records(answer.content)[1]) == 7
    assert answer.headers["X-PAR-Estimate-Packets"] == "7"


@pytest.mark.parametrize("path", ["data.pcap", "flows"])
def test_the_collector_names_a_parameter_given_empty(site, path):
    answer = collector_get(site, {**EVERYTHING, "node_id": "2", "src_addr": ""}, path=path)
    assert answer.status_code == 400
    assert "empty parameter: src_addr" in answer.text


# ---------------------------------------------------------------- odd limits, both roles


@pytest.mark.parametrize("value", ["0", "1", "23", "-1", "+7", "7.0", "1e3", "0x10", "\u0667", str(2**63)])
@pytest.mark.parametrize("where", ["node", "collector"])
def test_a_limit_bytes_no_answer_can_keep_is_a_400_naming_it(site, where, value):
    params = {**EVERYTHING, "limit_bytes": value}
    answer = (
        node_get(site, "2", params) if where == "node" else collector_get(site, {**params, "node_id": "1,2"})
    )
    assert answer.status_code == 400
    assert "invalid limit_bytes: a whole number from 24 to 9223372036854775807" in answer.text


@pytest.mark.parametrize(
    "limits",
    [
        {"limit_bytes": "24"},
        {"limit_bytes": "25"},
        {"limit_bytes": "100"},
        {"limit_bytes": " 700 "},
        {"limit_bytes": "0700"},
        {"limit_packets": "1"},
        {"limit_packets": "1", "limit_bytes": "24"},
        {"limit_packets": "3", "limit_bytes": "5000"},
    ],
)
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("where", ["node", "one node", "two nodes"])
def test_the_estimate_bounds_every_answer_cut_by_odd_limits(site, where, fmt, limits):
    params = {**EVERYTHING, "format": fmt, **limits}
    if where == "node":
        answer = node_get(site, "2", params)
    else:
        answer = collector_get(site, {**params, "node_id": "2" if where == "one node" else "1,2"})
    assert answer.status_code == 200, answer.text
    size = int(limits.get("limit_bytes", "0").strip() or 0)
    if fmt == "pcap" and where != "two nodes":
        header, records = pcap_records(answer.content)
        assert len(records) <= int(limits.get("limit_packets", 10**9))
        assert size == 0 or len(answer.content) <= size  # a classic header (24 bytes) always fits
    # The file header always goes out whole (a pcapng one is longer than 24 bytes); the estimate bounds it all.
    assert int(answer.headers["X-PAR-Estimate-Bytes"]) >= len(answer.content)
    assert int(answer.headers["X-PAR-Estimate-Packets"]) <= int(limits.get("limit_packets", 10**9))


def test_a_collector_maximum_below_any_header_asks_the_node_for_its_header_only(site, tmp_path):
    nodes = {"2": site["2"].url.removeprefix("http://")}
    with live_collector(tmp_path, nodes, {ADMIN: ["0"]}, PAR_MAX_ANSWER_BYTES="10") as (collector, _, _):
        query = {**EVERYTHING, "node_id": "2", "api_key": ADMIN, "limit_bytes": "1000"}
        answer = requests.get(f"{collector.url}/data.pcap", params=query, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.content == whole(site)[:24]
