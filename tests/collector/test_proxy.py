"""The proxy to nodes without a working node: what reaches it, and dead or hung nodes."""

from __future__ import annotations

import pytest
from django.test import override_settings

from collector.models import NODE_SELECTION, Node, RequestLog
from tests.collector.live import WrongServer

FLOW = {
    "src_addr": "10.0.0.1",
    "src_port": "1234",
    "dst_addr": "2001:db8::0002",
    "dst_port": "80",
    "start_time": "2001-01-01T17:01:00Z",
    "end_time": "978368700.5",
}
NODE_PROBLEM = {"error": "there was a problem requesting from the node"}


@pytest.fixture
def node1_hung(nodes, hung_node):
    Node.objects.filter(pk=1).update(address=hung_node.address)
    return hung_node


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("src_addr", "10.0.0.300", "invalid src_addr"),
        ("dst_port", "65536", "invalid dst_port"),
        ("start_time", "yesterday-ish", "invalid start time"),
        ("end_time", "2000-01-01", "invalid end time"),
        ("proto", "icmpx", "invalid proto"),
        ("start_time", "", "missing parameter: start_time"),
        ("start_time", "-10m ago", "invalid start time"),
        ("end_time", "01/12/2026", "invalid end time"),
        ("src_addr", "10.1.2.3/16", "invalid src_addr"),
        ("community_id", "1:nope", "invalid community_id"),
        ("comunity_id", "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "unknown parameter: comunity_id"),
        ("limit_bytes", "0", "invalid limit_bytes"),
        ("format", "pcap-ng", "invalid format"),
    ],
)
def test_bad_flow_parameters_are_refused_without_asking_the_node(api, node1_key, param, value, message):
    # Node 1 is dead: a round trip would be a 502, not a 400.
    response = api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "1", param: value})
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_a_window_longer_than_the_maximum_is_refused(api, node1_key):
    with override_settings(PAR_MAX_WINDOW=60):
        response = api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "1"})
    assert response.status_code == 400
    assert "at most 60 seconds" in response.json()["error"]


def test_a_window_past_the_year_9999_is_refused_before_the_node_is_asked(api, node1_key):
    window = {"start_time": "9999-12-31T23:00:00-23:59", "end_time": "9999-12-31T23:59:59-23:59"}
    response = api.get_as(node1_key, "/data.pcap", {**FLOW, **window, "node_id": "1"})
    assert response.status_code == 400
    assert "end_time" in response.json()["error"]


@pytest.mark.parametrize(
    "node_id",
    ["one", "-1", "1.0", "0", "99999999999", "2147483648", "9999999999", "\u00b2", "\u0661", "\uff11"],
)
def test_a_node_id_that_is_not_a_number_is_refused(api, admin_key, node_id):
    response = api.get_as(admin_key, "/data.pcap", {**FLOW, "node_id": node_id})
    assert response.status_code == 400
    assert response.json() == {"error": NODE_SELECTION}


def test_data_pcap_from_a_dead_node_is_a_bad_gateway(api, node1_key):
    response = api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "1"})
    assert response.status_code == 502
    assert response.json() == NODE_PROBLEM


@override_settings(PAR_NODE_READ_TIMEOUT=1)
def test_a_node_that_does_not_answer_is_a_gateway_timeout(api, node1_key, node1_hung):
    assert api.get_as(node1_key, "/nodes/1/status").status_code == 504
    response = api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "1"})
    assert response.status_code == 504
    assert response.json() == NODE_PROBLEM


@override_settings(PAR_NODE_READ_TIMEOUT=1, PAR_NODE_SECRET="s3cret-for-nodes")
def test_the_node_gets_the_flow_and_the_secret_but_never_the_key(api, node1_key, node1_hung):
    api.get("/data.pcap", {**FLOW, "node_id": "1", "proto": "udp", "api_key": node1_key.key})
    request = node1_hung.received.decode("latin-1")
    request_line, _, rest = request.partition("\r\n")
    assert request_line.startswith("GET /data.pcap?")
    assert "src_addr=10.0.0.1&src_port=1234&dst_addr=2001%3Adb8%3A%3A2&dst_port=80" in request_line
    assert "start_time=978368460.000000000&end_time=978368700.500000000&proto=17" in request_line
    assert "api_key" not in request and node1_key.key not in request
    assert "node_id" not in request_line
    assert "X-PAR-Node-Secret: s3cret-for-nodes\r\n" in rest


@override_settings(PAR_NODE_READ_TIMEOUT=1)
def test_no_secret_header_without_a_secret(api, node1_key, node1_hung):
    api.get_as(node1_key, "/nodes/1/ping")
    assert node1_hung.received.startswith(b"GET /ping HTTP/1.1\r\n")
    assert b"x-par-node-secret" not in node1_hung.received.lower()
    assert node1_key.key.encode() not in node1_hung.received


def test_every_data_pcap_with_a_key_is_logged(api, node1_key, nodes):
    api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "1", "proto": "tcp"}, REMOTE_ADDR="192.0.2.7")
    api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "2"})
    api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "1", "src_port": "x"})
    api.get("/data.pcap", {**FLOW, "node_id": "1"})  # no key: nobody to log it for
    dead, refused, bad = RequestLog.objects.order_by("id")
    assert RequestLog.objects.count() == 3
    assert (dead.key_prefix, dead.node, dead.status, dead.error) == (
        node1_key.row.prefix,
        1,
        502,
        NODE_PROBLEM["error"],
    )
    assert (dead.src_addr, dead.src_port, dead.dst_addr, dead.dst_port, dead.proto) == (
        "10.0.0.1",
        1234,
        "2001:db8::2",
        80,
        6,
    )
    assert dead.start.isoformat() == "2001-01-01T17:01:00+00:00"
    assert dead.end.isoformat() == "2001-01-01T17:05:00.500000+00:00"
    assert dead.client_ip == "192.0.2.7"
    assert dead.duration > 0
    assert (refused.node, refused.status, refused.src_addr) == (2, 403, None)
    assert (bad.status, bad.error) == (400, "invalid src_port: a port number from 0 to 65535 is required")


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected_status", "expected_error"),
    [
        (
            200,
            b"<html>Welcome to nginx</html>",
            "text/html",
            502,
            f"{NODE_PROBLEM['error']}: its answer is not JSON",
        ),
        (
            502,
            b"<html>Bad Gateway</html>",
            "text/html",
            502,
            f"{NODE_PROBLEM['error']}: its answer is not JSON",
        ),
        (
            503,
            b'{"error": "cannot read capture data"}',
            "application/json",
            502,
            f"{NODE_PROBLEM['error']}: it answered 503 (cannot read capture data)",
        ),
        (
            403,
            b'{"error": "this node does not answer this caller"}',
            "application/json",
            502,
            "the node refused this collector (check PAR_NODE_ALLOW and PAR_NODE_SECRET)",
        ),
        (
            403,
            b"<html>Forbidden</html>",
            "text/html",
            502,
            "the node refused this collector (check PAR_NODE_ALLOW and PAR_NODE_SECRET)",
        ),
        (418, b"short and stout", "text/plain", 502, f"{NODE_PROBLEM['error']}: its answer is not JSON"),
        pytest.param(
            200,
            b"[" * 100_000 + b"]" * 100_000,  # nested deeper than the JSON parser recurses
            "application/json",
            502,
            f"{NODE_PROBLEM['error']}: its answer is not JSON",
            id="deeply-nested-json",
        ),
    ],
)
def test_what_a_node_address_answers_is_passed_or_mapped(
    api, admin_key, status, body, content_type, expected_status, expected_error
):
    server = WrongServer(status, body, content_type)
    try:
        Node.objects.filter(pk=1).update(address=server.address)
        for path, params in (("/nodes/1/status", {}), ("/data.pcap", {**FLOW, "node_id": "1"})):
            response = api.get_as(admin_key, path, params)
            if path == "/data.pcap" and status == 200:
                expected_error = f"{NODE_PROBLEM['error']}: its answer is not a pcap"
            assert response.status_code == expected_status, path
            assert response.json() == {"error": expected_error}, path
    finally:
        server.close()


@pytest.mark.parametrize("path", ["/nodes/1/status", "/data.pcap"])
def test_a_redirect_from_a_node_is_not_followed(api, admin_key, path):
    """A node (or whatever answers at its address) cannot send the collector, and its secret, elsewhere."""
    elsewhere = WrongServer(200, b'{"secret": "data of another node"}', "application/json")
    server = WrongServer(302, b"", headers={"Location": f"http://{elsewhere.address}/data.pcap"})
    try:
        Node.objects.filter(pk=1).update(address=server.address)
        with override_settings(PAR_NODE_SECRET="s3cret"):
            response = api.get_as(admin_key, path, {**FLOW, "node_id": "1"} if path == "/data.pcap" else {})
        assert response.status_code == 502
        assert response.json() == {"error": f"{NODE_PROBLEM['error']}: it answered 302"}
        assert len(server.requests) == 1
        assert elsewhere.requests == []
    finally:
        server.close()
        elsewhere.close()


def test_a_cookie_a_node_sets_is_never_sent_back_to_it_or_to_another_node(api, admin_key):
    setter = WrongServer(200, b"{}", "application/json", headers={"Set-Cookie": "sid=node-one; Path=/"})
    other = WrongServer(200, b"{}", "application/json")
    try:
        Node.objects.filter(pk=1).update(address=setter.address)
        Node.objects.filter(pk=2).update(address=other.address)
        for path in ("/nodes/1/status", "/nodes/1/status", "/nodes/2/status"):
            assert api.get_as(admin_key, path).status_code == 200, path
        sent = [headers for _, headers in setter.requests + other.requests]
        assert len(sent) == 3
        assert [h.get("Cookie") for h in sent] == [None, None, None]
    finally:
        setter.close()
        other.close()
