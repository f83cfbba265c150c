"""The node's API through Django's test client: parameters, routes, plugins, schema and docs."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.servers import SEED_QUERY

NODE = {"ROOT_URLCONF": "parsite.urls_node", "PAR_ROLE": "node"}
# The seed's example query.
SEED = SEED_QUERY


@pytest.fixture
def node(tmp_path):
    capture, filed = tmp_path / "capture", tmp_path / "filed"
    capture.mkdir()
    filed.mkdir()
    with override_settings(**NODE, PAR_CAPTURE_DIR=capture, PAR_FILER_DIR=filed, PAR_MAX_WINDOW=3600):
        yield Client()


def test_no_start_time_is_a_400_naming_it(node):
    response = node.get("/data.pcap")
    assert response.status_code == 400
    assert response.json()["error"] == "missing parameter: start_time"


def test_an_unknown_parameter_is_a_400_naming_it(node):
    response = node.get("/data.pcap", {**SEED, "comunity_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg="})
    assert response.status_code == 400
    assert response.json()["error"] == "unknown parameter: comunity_id"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("src_port", "65536"),
        ("dst_port", "http"),
        ("src_addr", "example.org"),
        ("dst_addr", "2.2.2"),
        ("start_time", "soon"),
        ("end_time", "later"),
        ("proto", "icmpv9"),
    ],
)
def test_an_invalid_parameter_is_a_400_naming_it(node, param, value):
    response = node.get("/data.pcap", {**SEED, param: value})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert param in response.json()["error"]


def test_an_end_before_the_start_is_a_400(node):
    response = node.get("/data.pcap", {**SEED, "end_time": "2001-01-01 4pm"})
    assert response.status_code == 400
    assert "before the start" in response.json()["error"]


def test_a_window_longer_than_max_window_is_a_400(node):
    response = node.get("/data.pcap", {**SEED, "end_time": "2001-01-01 7:02pm"})
    assert response.status_code == 400
    assert "3600" in response.json()["error"]


def test_a_window_past_the_year_9999_is_a_400(node):
    window = {"start_time": "9999-12-31T23:00:00-23:59", "end_time": "9999-12-31T23:59:59-23:59"}
    response = node.get("/data.pcap", {**SEED, **window})
    assert response.status_code == 400
    assert "end_time" in response.json()["error"]


def test_a_client_asking_for_a_pcap_still_gets_its_error_as_json(node):
    response = node.get("/data.pcap", {**SEED, "src_port": "x"}, HTTP_ACCEPT="application/vnd.tcpdump.pcap")
    assert response.status_code == 400
    assert "src_port" in response.json()["error"]


def test_routes_list_the_node_routes_with_their_parameters(node):
    response = node.get("/routes")
    assert response.status_code == 200
    routes = {route["path"]: route for route in response.json()}
    assert {"/ping", "/status", "/data.pcap", "/routes", "/plugins", "/schema", "/docs"} <= set(routes)
    assert routes["/data.pcap"]["query"] == [
        "src_addr",
        "src_port",
        "dst_addr",
        "dst_port",
        "start_time",
        "end_time",
        "proto",
        "community_id",
        "format",
        "limit_packets",
        "limit_bytes",
        "node_id",
        "api_key",
    ]
    assert routes["/data.pcap"]["methods"] == ["GET", "POST"]  # POST: one Suricata or Zeek record
    assert not any(path.startswith("/keys") or path.startswith("/nodes") for path in routes)


def test_plugins_is_a_list_of_metadata(node):
    response = node.get("/plugins")
    assert response.status_code == 200
    assert isinstance(response.json(), list)


def test_the_schema_is_openapi_3_and_describes_data_pcap(node):
    response = node.get("/schema", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operation = schema["paths"]["/data.pcap"]["get"]
    names = {p["name"]: p.get("required", False) for p in operation["parameters"]}
    assert names == {
        "src_addr": False,
        "src_port": False,
        "dst_addr": False,
        "dst_port": False,
        "proto": False,
        "community_id": False,
        "start_time": True,
        "end_time": False,
        "format": False,
        "limit_packets": False,
        "limit_bytes": False,
    }
    for parameter in operation["parameters"]:
        assert parameter.get("description"), parameter["name"]
    assert "application/vnd.tcpdump.pcap" in operation["responses"]["200"]["content"]
    assert {"400", "403", "404"} <= set(operation["responses"])
    assert {"/status", "/routes", "/plugins", "/ping"} <= set(schema["paths"])
    assert not any(path.startswith("/keys") for path in schema["paths"])


def test_docs_use_only_local_assets(node):
    response = node.get("/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn" not in html.lower() and "https://" not in html
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        url = f"/static/drf_spectacular_sidecar/swagger-ui-dist/{asset}"
        assert url in html
        fetched = node.get(url)
        assert fetched.status_code == 200
        assert b"".join(fetched.streaming_content)


def test_docs_assets_do_not_leave_their_directory(node):
    response = node.get("/static/drf_spectacular_sidecar/../../__init__.py")
    assert response.status_code == 404
    assert node.get("/static/drf_spectacular_sidecar/swagger-ui-dist/nope.js").status_code == 404


def test_docs_assets_are_for_allowed_callers_only(node):
    url = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"
    assert Client(REMOTE_ADDR="192.0.2.7").get(url).status_code == 403
