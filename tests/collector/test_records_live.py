"""POST /data.pcap and POST /flows of one Suricata or Zeek record, on a node and through the collector."""

from __future__ import annotations

import json
from collections.abc import Iterator
from ipaddress import ip_address
from urllib.parse import parse_qsl

import pytest
import requests

from api.times import format_iso
from engine.dissection.communityid import community_id
from tests.collector.live import log_count, newest_log_row
from tests.collector.test_live import ADMIN, live_collector, node_env
from tests.node.captures import A_PORT, B_PORT, NS, T0, A, B, Tree, make_tree
from tests.servers import Server, gunicorn

pytestmark = pytest.mark.slow

FLOW_START, FLOW_END = (T0 + 70) * NS, (T0 + 100) * NS  # inside the second (filed) minute
CID = community_id(ip_address(A).packed, A_PORT, ip_address(B).packed, B_PORT, 6)
EVE = {
    "timestamp": "2015-02-26T16:01:20.000000+0000",
    "flow_id": 42,
    "event_type": "flow",
    "src_ip": A,
    "src_port": A_PORT,
    "dest_ip": B,
    "dest_port": B_PORT,
    "proto": "TCP",
    "flow": {
        "pkts_toserver": 1,
        "pkts_toclient": 1,
        "start": format_iso(FLOW_START)[:-4] + "+0000",
        "end": format_iso(FLOW_END)[:-4] + "+0000",
    },
}
ZEEK = {
    "ts": f"{FLOW_START // NS}.{FLOW_START % NS:09d}",
    "uid": "CHhAvVGS1DHFjwGM9",
    "id.orig_h": A,
    "id.orig_p": A_PORT,
    "id.resp_h": B,
    "id.resp_p": B_PORT,
    "proto": "tcp",
    "duration": 30,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[Server, Server, Tree, str]]:
    base = tmp_path_factory.mktemp("records")
    env = node_env(base, "n1")
    tree = make_tree(base / "tree")
    with gunicorn("node", {**env, **tree.env(), "PAR_MAX_WINDOW": "86400"}) as node:
        (base / "collector").mkdir()
        nodes = {"1": node.url.removeprefix("http://")}
        with live_collector(base / "collector", nodes, {ADMIN: ["0"]}) as (collector, database, _):
            yield node, collector, tree, database


def post(server: Server, path: str, record: object, **params: str) -> requests.Response:
    body = record if isinstance(record, bytes) else json.dumps(record).encode()
    return requests.post(f"{server.url}{path}", params=params, data=body, timeout=60)


def both(site, path: str, record: object, **params: str) -> tuple[requests.Response, requests.Response]:
    node, collector, _, _ = site
    return post(node, path, record, **params), post(
        collector, path, record, node_id="1", api_key=ADMIN, **params
    )


def the_get(server: Server, path: str, answer: requests.Response, **extra: str) -> requests.Response:
    """The GET that X-PAR-Query names, sent as it is."""
    params = dict(parse_qsl(answer.headers["X-PAR-Query"], keep_blank_values=True))
    return requests.get(f"{server.url}{path}", params={**params, **extra}, timeout=60)


def test_an_eve_flow_record_answers_its_flow_in_its_window_alike_on_both_roles(site):
    node, collector, tree, _ = site
    direct, through = both(site, "/data.pcap", EVE)
    assert direct.status_code == through.status_code == 200, direct.text + through.text
    expected = tree.expected(FLOW_START - NS, FLOW_END + NS, proto=6)
    assert direct.content == through.content == expected
    assert len(expected) > 1000
    query = dict(parse_qsl(direct.headers["X-PAR-Query"]))
    assert query == {
        "src_addr": A,
        "src_port": str(A_PORT),
        "dst_addr": B,
        "dst_port": str(B_PORT),
        "proto": "tcp",
        "start_time": format_iso(FLOW_START - NS),
        "end_time": format_iso(FLOW_END + NS),
    }
    assert dict(parse_qsl(through.headers["X-PAR-Query"])) == {"node_id": "1", **query}
    assert "api_key" not in through.headers["X-PAR-Query"]
    assert the_get(node, "/data.pcap", direct).content == expected
    assert the_get(collector, "/data.pcap", through, api_key=ADMIN).content == expected


def test_a_community_id_selects_the_flow_whatever_the_protocol(site):
    _, _, tree, _ = site
    direct, through = both(site, "/data.pcap", {**EVE, "community_id": CID})
    assert direct.status_code == through.status_code == 200
    assert dict(parse_qsl(direct.headers["X-PAR-Query"]))["community_id"] == CID
    assert direct.content == through.content == tree.expected(FLOW_START - NS, FLOW_END + NS, proto=6)


def test_a_zeek_record_answers_as_the_eve_record_of_the_same_flow(site):
    _, _, tree, _ = site
    body = json.dumps(ZEEK).replace(f'"{ZEEK["ts"]}"', ZEEK["ts"]).encode()  # ts as a JSON number
    direct, through = both(site, "/data.pcap", body)
    assert direct.status_code == through.status_code == 200, direct.text
    assert direct.content == through.content == tree.expected(FLOW_START - NS, FLOW_END + NS, proto=6)


def test_the_query_string_overrides_the_window_and_adds_limits(site):
    _, _, tree, _ = site
    start, end = (T0 + 80) * NS, (T0 + 90) * NS
    direct, through = both(
        site, "/data.pcap", EVE, start_time=str(start // NS), end_time=str(end // NS), limit_packets="3"
    )
    assert direct.status_code == through.status_code == 200
    query = dict(parse_qsl(direct.headers["X-PAR-Query"]))
    assert (query["start_time"], query["end_time"], query["limit_packets"]) == (
        str(T0 + 80),
        str(T0 + 90),
        "3",
    )
    expected = tree.expected(start, end, proto=6)
    assert direct.content == through.content
    assert expected.startswith(direct.content[:-1]) and len(direct.content) < len(expected)


def test_post_flows_lists_the_records_flow(site):
    direct, through = both(site, "/flows", {**EVE, "community_id": CID})
    assert direct.status_code == through.status_code == 200, direct.text
    rows, merged = direct.json()["flows"], through.json()["flows"]
    assert [(r["community_id"], r["packets"]) for r in rows] == [
        (r["community_id"], r["packets"]) for r in merged
    ]
    assert [r["community_id"] for r in rows] == [CID]
    assert through.headers["X-PAR-Query"].startswith("node_id=1&community_id=")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty body"),
        (b"{not json", "not JSON"),
        (b'{"event_type": "alert", "timestamp": "2015-02-26T16:01:00Z"}', "names no flow"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2"}', "the record has no time"),
        (b"[" * 50_000, "nested too deeply"),
    ],
)
def test_a_bad_record_is_a_400_saying_what_is_wrong_on_both_roles(site, body, says):
    direct, through = both(site, "/data.pcap", body)
    for answer in (direct, through):
        assert answer.status_code == 400, answer.text
        assert says in answer.json()["error"]


def test_selectors_in_the_query_string_of_a_post_are_refused(site):
    direct, through = both(site, "/data.pcap", EVE, src_addr="10.0.0.9")
    assert direct.status_code == through.status_code == 400
    assert "the record names the flow" in direct.json()["error"]


def test_a_body_over_the_bound_is_a_413_before_it_is_read(site):
    direct, through = both(site, "/flows", b" " * (1 << 20) + b"{}")
    assert direct.status_code == through.status_code == 413
    assert "record too large" in direct.json()["error"]


def test_a_record_without_a_key_is_refused_before_it_is_read(site):
    _, collector, _, _ = site
    answer = requests.post(f"{collector.url}/data.pcap", params={"node_id": "1"}, data=b"{", timeout=10)
    assert answer.status_code == 401


def test_the_request_log_keeps_the_query_the_record_stood_for(site):
    _, _, _, database = site
    before = log_count(database)
    _, through = both(site, "/data.pcap", {**EVE, "community_id": CID})
    assert through.status_code == 200
    method, query = newest_log_row(database, "method, query", before)
    assert method == "POST"
    assert query.startswith(f"node_id=1&community_id={CID}&start_time=") and ADMIN not in query


def test_a_record_sent_as_curl_d_sends_it_with_a_form_content_type_is_read_alike(site):
    node, collector, tree, _ = site
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = json.dumps({**EVE, "community_id": CID}).encode()
    direct = requests.post(f"{node.url}/data.pcap", data=body, headers=form, timeout=60)
    through = requests.post(
        f"{collector.url}/data.pcap",
        params={"node_id": "1"},
        data=body,
        headers={**form, "X-Api-Key": ADMIN},
        timeout=60,
    )
    assert direct.status_code == through.status_code == 200, direct.text + through.text
    assert direct.content == through.content == tree.expected(FLOW_START - NS, FLOW_END + NS, proto=6)
