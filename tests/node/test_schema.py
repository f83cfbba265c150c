"""The node's OpenAPI document: valid OpenAPI 3, complete, and generated without warnings."""

from __future__ import annotations

import os
import sys

import pytest
import yaml
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from tests.servers import run

API_PATHS = {"/ping", "/status", "/data.pcap", "/flows", "/routes", "/plugins"}


@pytest.fixture
def schema():
    with override_settings(ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node"):
        return SchemaGenerator(urlconf="parsite.urls_node").get_schema(request=None, public=True)


def test_the_schema_is_valid_openapi_3(schema):
    validate_schema(schema)  # raises on any departure from the OpenAPI 3 JSON schema
    assert schema["openapi"].startswith("3.")


def test_every_api_route_is_described_with_its_refusal(schema):
    assert set(schema["paths"]) == API_PATHS
    for path in API_PATHS:
        responses = schema["paths"][path]["get"]["responses"]
        assert "200" in responses and "403" in responses, path


def test_data_pcap_parameters_say_what_a_valid_value_is(schema):
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/data.pcap"]["get"]["parameters"]}
    assert parameters["src_port"] == {"type": "integer", "minimum": 0, "maximum": 65535, "example": 443}
    assert {"format": "ipv6"} in parameters["dst_addr"]["anyOf"]
    assert {"format": "date-time"} in parameters["start_time"]["anyOf"]


def test_the_status_shape_is_described_with_byte_counts(schema):
    status = schema["components"]["schemas"]["Status"]
    assert set(status["required"]) >= {
        "hostname",
        "du",
        "df",
        "capture",
        "files",
        "system_date",
        "utc_datetime",
    }
    du = schema["components"]["schemas"]["DirBytes"]["properties"]
    assert du["filerdir"]["type"] == "integer"


def test_schema_generation_has_no_warnings(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "f").mkdir()
    env = {
        **os.environ,
        "PAR_ROLE": "node",
        "PAR_DATA_DIR": str(tmp_path),
        "PAR_CAPTURE_DIR": str(tmp_path / "c"),
        "PAR_FILER_DIR": str(tmp_path / "f"),
    }
    out = tmp_path / "schema.yaml"
    result = run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(out)], env
    )
    assert result.returncode == 0, result.stderr
    assert "/data.pcap" in yaml.safe_load(out.read_text())["paths"]


def test_every_selection_parameter_is_documented_with_an_example(schema):
    for path in ("/data.pcap", "/flows"):
        parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
        for name in ("src_addr", "src_port", "dst_addr", "dst_port", "proto", "community_id", "start_time"):
            assert parameters[name]["description"], (path, name)
            assert parameters[name].get("examples") or "example" in parameters[name]["schema"], (path, name)
    flows = {p["name"] for p in schema["paths"]["/flows"]["get"]["parameters"]}
    assert {"sort", "limit", "output"} <= flows


def test_the_flows_answer_has_its_schema(schema):
    content = schema["paths"]["/flows"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in content
    row = schema["components"]["schemas"]["FlowRow"]
    assert {"proto", "src_addr", "community_id", "first", "last", "packets", "bytes"} <= set(row["required"])
