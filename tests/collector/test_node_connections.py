"""Connections to the nodes: kept open across calls, replaced when the node closed them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collector.models import Node
from pcapgen import ether, pcap_bytes, udp
from tests.collector.live import KeepAliveNode

FLOW = {"src_addr": "10.0.0.1", "start_time": "2001-01-01T17:01:00Z", "end_time": "2001-01-01T17:02:00Z"}
PCAP = pcap_bytes([(978368461 * 10**9, ether(udp("10.0.0.1", 1234, "10.0.0.2", 53, b"q")))])


@pytest.fixture(params=[False, True], ids=["content-length", "chunked"])
def node1(request, nodes) -> Iterator[KeepAliveNode]:
    server = KeepAliveNode(PCAP, chunked=request.param)
    Node.objects.filter(pk=1).update(address=server.address)
    yield server
    server.close()


def pcap(api, key, **params):
    response = api.get_as(key, "/data.pcap", {**FLOW, "node_id": "1", **params})
    # The test client closes a streamed response once its body was read to its end.
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body


def test_calls_to_a_node_share_one_kept_connection(api, admin_key, node1):
    for _ in range(2):
        assert pcap(api, admin_key) == (200, PCAP)
        assert api.head("/data.pcap", {**FLOW, "node_id": "1"}, headers=admin_key.headers).status_code == 200
    assert (
        api.get_as(admin_key, "/flows", {**FLOW, "node_id": "1"}).status_code == 502
    )  # a pcap is no listing
    assert pcap(api, admin_key) == (200, PCAP)
    assert len(node1.requests) == 6
    assert node1.connections == 1


def test_a_node_restarted_between_two_calls_answers_the_next_one(api, admin_key, node1):
    assert pcap(api, admin_key) == (200, PCAP)
    node1.restart()
    assert pcap(api, admin_key) == (200, PCAP)
    assert node1.connections == 2


def test_a_kept_connection_dropped_as_the_request_goes_out_is_asked_again_on_a_new_one(api, admin_key, node1):
    assert pcap(api, admin_key) == (200, PCAP)
    node1.drop_next = 1
    assert pcap(api, admin_key) == (200, PCAP)
    assert len(node1.requests) == 3
    assert node1.connections == 2


def test_a_node_dropping_every_request_is_asked_twice_at_most(api, admin_key, node1):
    node1.drop_next = 10
    status, body = pcap(api, admin_key)
    assert status == 502
    assert len(node1.requests) == 2
