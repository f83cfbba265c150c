"""The seed's collector suite, and the rest of the collector's endpoints."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from collector.models import Node, RequestLog

FLOW = {
    "src_addr": "10.0.0.1",
    "src_port": "1234",
    "dst_addr": "10.0.0.2",
    "dst_port": "80",
    "start_time": "2001-01-01 5:01pm",
    "end_time": "2001-01-01 5:05pm",
}


def test_data_pcap_without_a_key_is_refused(api, nodes):
    response = api.get("/data.pcap", {**FLOW, "node_id": "1"})
    assert response.status_code == 401
    assert response.json() == {"error": "a valid API key is required"}
    assert response["WWW-Authenticate"].startswith("Api-Key")


def test_data_pcap_without_node_id_is_a_bad_request(api, admin_key):
    response = api.get_as(admin_key, "/data.pcap", FLOW)
    assert response.status_code == 400
    assert response.json() == {"error": "missing parameter: node_id"}


def test_it_refuses_a_key_without_a_grant(api, node1_key):
    response = api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "2"})
    assert response.status_code == 403
    assert "error" in response.json()


def test_an_unknown_node_is_not_found(api, admin_key):
    response = api.get_as(admin_key, "/data.pcap", {**FLOW, "node_id": "99"})
    assert response.status_code == 404
    assert response.json() == {"error": "no such node"}


def test_a_limited_key_cannot_learn_whether_a_node_exists(api, node1_key):
    assert api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "99"}).status_code == 403


def test_an_inactive_node_is_not_found(api, admin_key, nodes):
    Node.objects.filter(pk=2).update(active=False)
    assert api.get_as(admin_key, "/data.pcap", {**FLOW, "node_id": "2"}).status_code == 404
    assert api.get_as(admin_key, "/nodes/2/ping").status_code == 404


def test_keys_without_a_key_is_refused(api, nodes):
    response = api.get("/keys")
    assert response.status_code == 401
    assert response.json() == {"error": "a valid API key is required"}


def test_keys_with_the_master_key_lists_every_key_and_no_key_itself(api, admin_key, node1_key, nogrant_key):
    response = api.get_as(admin_key, "/keys")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {admin_key.row.prefix, node1_key.row.prefix, nogrant_key.row.prefix}
    assert body[admin_key.row.prefix]["nodes"] == ["0"]
    assert body[admin_key.row.prefix]["admin"] is True
    assert body[node1_key.row.prefix]["nodes"] == ["1"]
    assert body[node1_key.row.prefix]["name"] == "analyst one"
    assert body[nogrant_key.row.prefix]["nodes"] == []
    assert set(body[admin_key.row.prefix]) >= {"name", "admin", "nodes", "created", "last_used"}
    for actor in (admin_key, node1_key, nogrant_key):
        assert actor.key not in response.content.decode()


def test_keys_with_a_limited_key_is_forbidden(api, node1_key):
    response = api.get_as(node1_key, "/keys")
    assert response.status_code == 403
    assert response.json() == {"error": "this request needs an admin key"}


def test_ping_needs_a_key(api, node1_key):
    assert api.get("/ping").status_code == 401
    response = api.get_as(node1_key, "/ping")
    assert response.status_code == 200
    body = response.json()
    assert body["role"] == "collector"
    assert set(body) >= {"version", "api_version", "uptime", "date"}


def test_a_dead_node_is_a_bad_gateway(api, admin_key):
    response = api.get_as(admin_key, "/nodes/1/ping")
    assert response.status_code == 502
    assert response.json() == {"error": "there was a problem requesting from the node"}


def test_nodes_list_for_the_master_key_has_every_node(api, admin_key, nodes):
    response = api.get_as(admin_key, "/nodes/list")
    assert response.status_code == 200
    assert response.json() == {"1": nodes[1].address, "2": nodes[2].address}


@pytest.mark.parametrize(("actor", "expected"), [("node1_key", ["1"]), ("node2_key", ["2"])])
def test_nodes_list_for_a_limited_key_has_its_nodes_only(api, nodes, actor, expected, request):
    response = api.get_as(request.getfixturevalue(actor), "/nodes/list")
    assert response.status_code == 200
    assert response.json() == {n: nodes[int(n)].address for n in expected}


def test_nodes_list_for_an_all_nodes_key_has_every_active_node(api, nodes, node1_key):
    node1_key.row.all_nodes = True
    node1_key.row.save()
    Node.objects.create(id=7, address="10.9.9.9")
    Node.objects.create(id=8, address="10.9.9.8", active=False)
    assert set(api.get_as(node1_key, "/nodes/list").json()) == {"1", "2", "7"}


def test_an_unsupported_node_command_is_a_bad_request(api, admin_key):
    response = api.get_as(admin_key, "/nodes/1/reboot")
    assert response.status_code == 400
    assert response.json() == {"error": "this request is not supported"}


def test_a_node_command_needs_a_grant_for_that_node(api, node1_key):
    assert api.get_as(node1_key, "/nodes/2/status").status_code == 403


def test_routes_lists_the_collector_api_with_its_parameters(api, nogrant_key):
    response = api.get_as(nogrant_key, "/routes")
    assert response.status_code == 200
    routes = {route["path"]: route for route in response.json()}
    assert {"/ping", "/keys", "/nodes/list", "/data.pcap", "/routes", "/plugins"} <= set(routes)
    assert routes["/nodes/<int:node_id>/<str:command>"]["params"] == ["node_id", "command"]
    assert {"node_id", "src_addr", "end_time", "proto"} <= set(routes["/data.pcap"]["query"])


def test_plugins_answers_a_list(api, nogrant_key):
    response = api.get_as(nogrant_key, "/plugins")
    assert response.status_code == 200
    assert isinstance(response.json(), list)


@pytest.mark.parametrize("path", ["/routes", "/plugins", "/nodes/list", "/nodes/1/ping"])
def test_every_api_route_needs_a_key(api, nodes, path):
    assert api.get(path).status_code == 401


@pytest.mark.parametrize("path", ["/schema", "/docs"])
def test_the_api_documentation_needs_no_key(api, path):
    assert api.get(path).status_code == 200


def test_the_docs_work_offline_with_assets_served_by_the_collector(api):
    html = api.get("/docs").content.decode()
    assert "https://" not in html
    url = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert url in html
    asset = api.get(url)
    assert asset.status_code == 200
    assert b"".join(asset.streaming_content)
    assert api.get("/static/drf_spectacular_sidecar/../../__init__.py").status_code == 404


def test_the_schema_documents_the_key_schemes_and_data_pcap(api):
    schema = api.get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    schemes = schema["components"]["securitySchemes"]
    # The three ways of a key, and the web page's session cookie.
    assert {s["name"] for s in schemes.values()} == {"Authorization", "X-Api-Key", "api_key", "sessionid"}
    params = {p["name"] for p in schema["paths"]["/data.pcap"]["get"]["parameters"]}
    assert {
        "node_id",
        "src_addr",
        "src_port",
        "dst_addr",
        "dst_port",
        "start_time",
        "end_time",
        "proto",
    } <= params


@override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "3/min"}})
def test_requests_are_throttled_per_key(api, node1_key, node2_key):
    answers = [api.get_as(node1_key, "/ping").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert "error" in api.get_as(node1_key, "/ping").json()
    assert api.get_as(node2_key, "/ping").status_code == 200  # another key has its own budget


@override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "3/min"}})
def test_refused_requests_count_against_the_rate_too(api, node1_key):
    no_grant = {**FLOW, "node_id": "2"}
    answers = [api.get_as(node1_key, "/data.pcap", no_grant).status_code for _ in range(3)]
    answers.append(api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "x"}).status_code)
    answers.append(api.get_as(node1_key, "/keys").status_code)
    assert answers == [403, 403, 403, 429, 429]
    assert RequestLog.objects.filter(status=429).count() == 1


def test_keys_shows_an_all_nodes_key_with_every_active_node_and_revoked_keys_as_inactive(
    api, admin_key, node1_key, nogrant_key, nodes
):
    nogrant_key.row.all_nodes = True
    nogrant_key.row.save()
    node1_key.row.active = False
    node1_key.row.save()
    Node.objects.filter(pk=2).update(active=False)
    body = api.get_as(admin_key, "/keys").json()
    assert body[nogrant_key.row.prefix]["nodes"] == ["1"]
    assert body[nogrant_key.row.prefix]["all_nodes"] is True
    assert body[node1_key.row.prefix]["active"] is False
