"""GET /flows at the collector: several nodes' rows merged, each naming its node, failures listed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from collector.models import Node, RequestLog
from tests.collector.live import WrongServer

QUERY = {
    "src_addr": "10.0.0.1",
    "src_port": "1234",
    "dst_addr": "10.0.0.2",
    "dst_port": "80",
    "start_time": "1700000000",
    "end_time": "1700000600",
}
WINDOW = {"start": "2023-11-14T22:13:20.000000000Z", "end": "2023-11-14T22:23:20.000000000Z"}


def row(first: str, packets: int, nbytes: int, sport: int = 1234) -> dict:
    return {
        "proto": 6,
        "src_addr": "10.0.0.1",
        "src_port": sport,
        "dst_addr": "10.0.0.2",
        "dst_port": 80,
        "community_id": "1:abc=",
        "first": first,
        "last": first,
        "packets": packets,
        "bytes": nbytes,
    }


def flows_node(rows: list[dict], truncated: bool = False) -> WrongServer:
    body = json.dumps({"window": WINDOW, "flows": rows, "truncated": truncated, "failed": {}}).encode()
    return WrongServer(200, body, "application/json")


@pytest.fixture
def two_nodes(nodes) -> Iterator[tuple[WrongServer, WrongServer]]:
    one = flows_node([row("2023-11-14T22:13:21Z", 10, 1000), row("2023-11-14T22:13:25Z", 3, 300, 1300)])
    two = flows_node([row("2023-11-14T22:13:22Z", 50, 9000)])
    Node.objects.filter(pk=1).update(address=one.address)
    Node.objects.filter(pk=2).update(address=two.address)
    yield one, two
    one.close()
    two.close()


def test_the_rows_of_every_node_asked_are_merged_in_time_order_each_naming_its_node(
    api, admin_key, two_nodes
):
    answer = api.get_as(admin_key, "/flows", {**QUERY, "node_id": "1,2"})
    assert answer.status_code == 200
    body = answer.json()
    assert [(r["node"], r["first"]) for r in body["flows"]] == [
        ("1", "2023-11-14T22:13:21Z"),
        ("2", "2023-11-14T22:13:22Z"),
        ("1", "2023-11-14T22:13:25Z"),
    ]
    assert body["window"] == WINDOW and body["truncated"] is False and body["failed"] == {}
    path, _ = two_nodes[0].requests[0]
    assert path.startswith("/flows?") and "api_key" not in path and "node_id" not in path


def test_sort_and_limit_apply_to_the_merged_rows(api, admin_key, two_nodes):
    body = api.get_as(admin_key, "/flows", {**QUERY, "node_id": "1,2", "sort": "-bytes", "limit": "2"}).json()
    assert [(r["node"], r["bytes"]) for r in body["flows"]] == [("2", 9000), ("1", 1000)]
    assert body["truncated"] is True
    assert "limit=2" in two_nodes[1].requests[0][0] and "sort=-bytes" in two_nodes[1].requests[0][0]


def test_a_node_that_does_not_answer_is_listed_as_failed(api, admin_key, nodes, two_nodes, dead_address):
    Node.objects.create(id=3, name="three", address=dead_address)
    body = api.get_as(admin_key, "/flows", {**QUERY, "node_id": "all"}).json()
    assert {r["node"] for r in body["flows"]} == {"1", "2"}
    assert list(body["failed"]) == ["3"]
    entry = RequestLog.objects.get(view="flows")
    assert (entry.nodes, entry.status) == ("1,2,3", 200)
    assert [(o["node"], o["status"]) for o in entry.outcomes] == [(1, 200), (2, 200), (3, None)]


def test_flows_as_csv_name_the_node_in_the_first_column(api, admin_key, two_nodes):
    answer = api.get_as(admin_key, "/flows", {**QUERY, "node_id": "1,2", "output": "csv"})
    assert answer["Content-Type"].startswith("text/csv")
    lines = answer.content.decode().splitlines()
    assert lines[0].startswith("node,proto,src_addr")
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "1"]


def test_flows_of_nodes_that_all_failed_is_a_bad_gateway(api, admin_key, nodes):
    answer = api.get_as(admin_key, "/flows", {**QUERY, "node_id": "1,2"})
    assert answer.status_code == 502
    assert "node 1" in answer.json()["error"] and "node 2" in answer.json()["error"]


def test_flows_needs_a_grant_for_every_node_asked(api, node1_key, two_nodes):
    assert api.get_as(node1_key, "/flows", {**QUERY, "node_id": "1,2"}).status_code == 403
    assert two_nodes[0].requests == []


@pytest.mark.parametrize(
    ("param", "value"), [("sort", "size"), ("limit", "0"), ("limit", "100001"), ("output", "xml")]
)
def test_bad_listing_parameters_are_refused_before_any_node_is_asked(api, admin_key, two_nodes, param, value):
    answer = api.get_as(admin_key, "/flows", {**QUERY, "node_id": "1,2", param: value})
    assert answer.status_code == 400 and param in answer.json()["error"]
    assert two_nodes[0].requests == []
