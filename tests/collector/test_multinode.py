"""One request, several sensors: real nodes under gunicorn behind a real collector, merged by time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from engine.formats import open_capture
from pcapgen import ether, pcap_bytes, raw, tcp, write_pcap
from tests.collector.live import DyingNode, HungNode, log_count, newest_log_row, rows
from tests.collector.test_live import FLOW, T0, live_collector, node_env
from tests.servers import Server, free_port, gunicorn

WINDOW = {"start_time": str(T0), "end_time": str(T0 + 120)}
ADMIN = "0b6a7d0e-51a3-4b8e-9f0f-3f1d2c4b5a61"
ANALYST = "7c3e1f2a-9d4b-4e6f-8a1c-2b3d4e5f6a7b"  # nodes 1, 2, 3
NODE1_ONLY = "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7"
STREAMER = "f0e1d2c3-b4a5-4968-8776-655443322110"  # nodes 1 and 7, for the download limit


def flow_packet(ts: int, payload: bytes, forward: bool = True) -> tuple[int, bytes]:
    packet = (
        tcp("10.0.0.1", 1234, "10.0.0.2", 80, payload)
        if forward
        else tcp("10.0.0.2", 80, "10.0.0.1", 1234, b"ok")
    )
    return ts, ether(packet)


def noise(ts: int) -> tuple[int, bytes]:
    return ts, ether(tcp("10.0.0.1", 1235, "10.0.0.2", 80, b"other port"))


# Node 1 and node 2 each saw their own packets of the flow, and both saw the "shared" ones.
SHARED = [flow_packet((T0 + 5) * 10**9 + i * 50_000_000, b"both sensors %d" % i) for i in range(20)]
NODE1 = sorted(
    [flow_packet((T0 + 1) * 10**9 + i * 7_000_000, b"n1 %d" % i * (i % 50), i % 3 != 0) for i in range(300)]
    + SHARED
)
NODE2 = sorted(
    [flow_packet((T0 + 1) * 10**9 + 3_000_000 + i * 11_000_000, b"n2 %d" % i) for i in range(200)] + SHARED
)
# Node 3 captures on two interfaces of different link types (Ethernet, then raw IP).
NODE3_ETHER = [flow_packet((T0 + 2) * 10**9 + i * 13_000_000, b"n3e %d" % i) for i in range(50)]
NODE3_RAW = [
    ((T0 + 40) * 10**9 + i * 17_000_000, raw(tcp("10.0.0.2", 80, "10.0.0.1", 1234, b"n3r %d" % i)))
    for i in range(50)
]
NODE3 = NODE3_ETHER + NODE3_RAW


def union(*streams: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Every node's packets sorted by time; equal times in node order (mergecap's rule)."""
    tagged = [(ts, n, i, frame) for n, s in enumerate(streams) for i, (ts, frame) in enumerate(s)]
    return [(ts, frame) for ts, _, _, frame in sorted(tagged)]


def decoded(tmp_path: Path, body: bytes) -> list[tuple[int, bytes]]:
    path = tmp_path / "answer"
    path.write_bytes(body)
    with open_capture(path) as capture:
        return [(record.ts_ns, record.data) for record in capture]


@pytest.fixture(scope="module")
def sensors(tmp_path_factory) -> Iterator[dict[str, Server | HungNode | DyingNode]]:
    base = tmp_path_factory.mktemp("sensors")
    envs = {n: node_env(base, f"n{n}") for n in (1, 2, 3)}
    write_pcap(
        Path(envs[1]["PAR_CAPTURE_DIR"]) / f"pcap.{T0}", sorted(NODE1 + [noise(T0 * 10**9 + 10**9 + 1)])
    )
    write_pcap(Path(envs[2]["PAR_CAPTURE_DIR"]) / f"pcap.{T0}", NODE2)
    write_pcap(Path(envs[3]["PAR_CAPTURE_DIR"]) / f"pcap.{T0}", NODE3_ETHER)
    write_pcap(Path(envs[3]["PAR_CAPTURE_DIR"]) / f"pcap.{T0 + 30}", NODE3_RAW, linktype=101)
    hung, dying = HungNode(), DyingNode(pcap_bytes(NODE2[:20]))
    stuck, silent = DyingNode(pcap_bytes(NODE2[:20]), hang=True), DyingNode(b"")
    with gunicorn("node", envs[1]) as n1, gunicorn("node", envs[2]) as n2, gunicorn("node", envs[3]) as n3:
        yield {"1": n1, "2": n2, "3": n3, "5": hung, "6": dying, "7": stuck, "8": silent}
    for server in (hung, dying, stuck, silent):
        server.close()


@pytest.fixture(scope="module")
def collector(tmp_path_factory, sensors) -> Iterator[tuple[Server, str, dict]]:
    nodes = {n: sensors[n].url.removeprefix("http://") for n in ("1", "2", "3")}
    nodes |= {"4": f"127.0.0.1:{free_port()}"} | {n: sensors[n].address for n in ("5", "6", "7", "8")}
    keys = {ADMIN: ["0"], ANALYST: ["1", "2", "3"], NODE1_ONLY: ["1"], STREAMER: ["1", "7"]}
    base = tmp_path_factory.mktemp("collector")
    with live_collector(base, nodes, keys, PAR_KEY_STREAMS="2") as live:
        yield live


# Rows of the request log before the last request of each collector (by database URL).
_ROWS_BEFORE: dict[str, int] = {}


def get(collector, params: dict, key: str = ADMIN, method: str = "GET", **kwargs) -> requests.Response:
    server, url, _ = collector
    _ROWS_BEFORE[url] = log_count(url)
    query = {**FLOW, **WINDOW, **params, "api_key": key}
    return requests.request(method, f"{server.url}/data.pcap", params=query, timeout=30, **kwargs)


def last_log(collector) -> tuple:
    """The row of the last request ``get`` made, once the collector has written it (after its answer)."""
    _, url, _ = collector
    row = newest_log_row(url, "method, nodes, outcomes, status, bytes_sent, error", _ROWS_BEFORE[url])
    method, nodes, outcomes, status, sent, error = row
    return method, nodes, json.loads(outcomes) if isinstance(outcomes, str) else outcomes, status, sent, error


def test_two_sensors_answer_one_classic_pcap_merged_by_time_byte_for_byte(collector):
    answer = get(collector, {"node_id": "1,2"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
    assert answer.headers["X-PAR-Nodes"] == "1,2"
    assert "X-PAR-Nodes-Failed" not in answer.headers
    # a packet both sensors saw is there twice, as mergecap does
    assert answer.content == pcap_bytes(union(NODE1, NODE2))
    method, nodes, outcomes, status, sent, error = last_log(collector)
    assert (method, nodes, status, error) == ("GET", "1,2", 200, "")
    assert sent == len(answer.content)
    assert [(o["node"], o["status"], o["error"]) for o in outcomes] == [(1, 200, ""), (2, 200, "")]
    assert all(o["bytes"] > 24 for o in outcomes)


def test_all_with_mixed_link_types_is_a_pcapng_with_an_interface_named_after_each_node(collector, tmp_path):
    answer = get(collector, {"node_id": "all"}, key=ANALYST)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/x-pcapng"
    assert answer.headers["X-PAR-Nodes"] == "1,2,3"
    assert decoded(tmp_path, answer.content) == union(NODE1, NODE2, NODE3)
    for name in (b"node 1", b"node 2", b"node 3"):
        assert name in answer.content


def test_format_pcapng_names_the_node_even_for_one(collector, tmp_path):
    answer = get(collector, {"node_id": "2", "format": "pcapng"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/x-pcapng"
    assert decoded(tmp_path, answer.content) == NODE2
    assert b"node 2" in answer.content


def test_nodes_down_or_hung_before_their_first_byte_are_left_out_and_named(collector):
    answer = get(collector, {"node_id": "1,4,5,8"})
    assert answer.status_code == 200
    assert answer.headers["X-PAR-Nodes"] == "1"
    failed = dict(item.split("=", 1) for item in answer.headers["X-PAR-Nodes-Failed"].split(", "))
    assert failed.keys() == {"4", "5", "8"}
    assert failed["5"] == "timed out"
    assert answer.content == pcap_bytes(NODE1)
    _, nodes, outcomes, status, _, _ = last_log(collector)
    assert (nodes, status) == ("1,4,5,8", 200)
    by_node = {o["node"]: o for o in outcomes}
    assert by_node[1]["status"] == 200 and by_node[1]["error"] == ""
    assert by_node[5]["status"] is None and by_node[5]["error"] == "timed out"
    assert by_node[4]["error"] and by_node[8]["error"]


def test_every_node_failing_is_a_bad_gateway_naming_each(collector):
    answer = get(collector, {"node_id": "4,5"})
    assert answer.status_code == 502
    assert "node 4" in answer.json()["error"] and "node 5: timed out" in answer.json()["error"]
    assert get(collector, {"node_id": "5"}).status_code == 504


def test_a_node_closing_before_its_first_byte_is_a_502_not_a_bare_500(collector):
    server, _, _ = collector
    answer = get(collector, {"node_id": "8"})
    assert answer.status_code == 502
    assert answer.json()["error"].startswith("there was a problem requesting from the node")
    assert "Error handling request" not in server.log()
    _, _, _, status, sent, _ = last_log(collector)
    assert (status, sent) == (502, 0)


def cut_short(collector, params: dict, key: str = ADMIN) -> int:
    """Read the answer to the end; the number of bytes received before the connection was cut."""
    received = 0
    with get(collector, params, key=key, stream=True) as answer:
        assert answer.status_code == 200, collector[0].log()[-3000:]
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in answer.iter_content(65536):
                received += len(chunk)
    return received


def test_a_node_dying_mid_stream_cuts_the_whole_answer(collector):
    received = cut_short(collector, {"node_id": "1,6"})
    assert received < len(pcap_bytes(union(NODE1, NODE2[:20])))
    _, _, outcomes, status, sent, error = last_log(collector)
    assert status == 200 and error.startswith("node failed mid-stream: node 6")
    assert {o["node"]: o["error"] for o in outcomes}[6].startswith("failed mid-stream")
    assert received <= sent
    assert ADMIN not in collector[0].log()  # the cut is logged without the request's URL and key


def test_a_node_hanging_mid_stream_cuts_the_answer_after_the_read_timeout(collector):
    started = time.monotonic()
    cut_short(collector, {"node_id": "2,7"})
    assert time.monotonic() - started < 15  # PAR_NODE_READ_TIMEOUT is 2 s here
    assert last_log(collector)[5].startswith("node failed mid-stream: node 7")


def test_a_key_without_every_node_asked_is_refused_before_any_node_is_asked(collector, sensors):
    before = len(sensors["6"].requests)
    answer = get(collector, {"node_id": "1,6"}, key=NODE1_ONLY)
    assert answer.status_code == 403
    assert answer.json() == {"error": "this API key may not query every node asked"}
    assert len(sensors["6"].requests) == before
    assert get(collector, {"node_id": "1,99"}).status_code == 404


def test_head_asks_the_nodes_for_headers_only_and_is_logged_as_such(collector):
    answer = get(collector, {"node_id": "1,2"}, method="HEAD")
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["X-PAR-Nodes"] == "1,2"
    assert last_log(collector)[0::3] == ("HEAD", 200)
    assert last_log(collector)[4] == 0


def test_options_is_not_logged_as_a_download(collector):
    _, url, _ = collector
    (count,) = rows(url, "SELECT COUNT(*) FROM collector_requestlog")[0]
    get(collector, {"node_id": "1"}, method="OPTIONS")
    time.sleep(0.2)
    assert rows(url, "SELECT COUNT(*) FROM collector_requestlog")[0][0] == count


def test_a_key_runs_at_most_par_key_streams_downloads_at_once(collector):
    server, _, _ = collector
    url = f"{server.url}/data.pcap"
    query = {**FLOW, **WINDOW, "node_id": "7", "api_key": STREAMER}
    held = [requests.get(url, params=query, stream=True, timeout=30) for _ in range(2)]
    try:
        assert [answer.status_code for answer in held] == [200, 200]
        third = requests.get(url, params={**query, "node_id": "1"}, timeout=30)
        assert third.status_code == 429
        assert "2 downloads at once (PAR_KEY_STREAMS)" in third.json()["error"]
        assert get(collector, {"node_id": "1"}, key=ADMIN).status_code == 200  # other keys unaffected
    finally:
        for answer in held:
            answer.close()
    deadline = time.monotonic() + 20  # the stuck downloads end at the node read timeout
    while requests.get(url, params={**query, "node_id": "1"}, timeout=30).status_code == 429:
        assert time.monotonic() < deadline, "the download slots were never given back"
        time.sleep(0.2)


@pytest.mark.parametrize("path", ["flows", "data.pcap"])
def test_an_answer_of_nodes_that_all_failed_still_carries_the_window(collector, path):
    server, _, _ = collector
    query = {**FLOW, **WINDOW, "node_id": "8", "api_key": ADMIN}  # closes before a byte of its answer
    answer = requests.get(f"{server.url}/{path}", params=query, timeout=30)
    assert answer.status_code == 502, answer.text
    start, end = answer.headers["X-PAR-Window"].split("/")
    assert start.endswith("Z") and end.endswith("Z") and start < end
