"""The OpenAPI document of both roles: valid, versioned, and its pcap answers kept as binary downloads.

openapi-spec-validator is the oracle for validity (independent of drf-spectacular's own check).
openapi-python-client, the generator the issue names, keeps a response only in JSON, text/* or
application/octet-stream; the last test applies that rule.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client, override_settings
from drf_spectacular.generators import SchemaGenerator
from openapi_spec_validator import validate

from api.version import VERSION

ROLES = {"collector": "parsite.urls_collector", "node": "parsite.urls_node"}
# The content types openapi-python-client turns into a typed response (others are dropped).
GENERATOR_KNOWS = ("application/json", "application/octet-stream")


def _schema(role: str) -> dict:
    urlconf = ROLES[role]
    with override_settings(ROOT_URLCONF=urlconf, PAR_ROLE=role):
        return SchemaGenerator(urlconf=urlconf).get_schema(request=None, public=True)


def _kept_by_generator(content_type: str) -> bool:
    return (
        content_type in GENERATOR_KNOWS or content_type.startswith("text/") or content_type.endswith("+json")
    )


@pytest.mark.parametrize("role", ROLES)
def test_the_schema_is_valid_openapi_3_by_an_independent_validator(role):
    schema = json.loads(json.dumps(_schema(role), default=str))
    validate(schema)  # raises OpenAPIValidationError on any departure


@pytest.mark.parametrize("role", ROLES)
def test_the_schema_names_the_version(role):
    assert _schema(role)["info"]["version"] == VERSION


def test_the_served_schema_names_the_version():
    with override_settings(ROOT_URLCONF="parsite.urls_collector", ALLOWED_HOSTS=["testserver"]):
        answer = Client().get("/schema", {"format": "json"})
    assert answer.status_code == 200
    assert json.loads(answer.content)["info"]["version"] == VERSION


@pytest.mark.parametrize("role", ROLES)
def test_the_pcap_answer_is_a_binary_download_a_generator_keeps(role):
    content = _schema(role)["paths"]["/data.pcap"]["get"]["responses"]["200"]["content"]
    assert "application/vnd.tcpdump.pcap" in content  # what the server sends
    kept = [kind for kind in content if _kept_by_generator(kind)]
    assert kept == ["application/octet-stream"], content
    assert content["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}


@pytest.mark.parametrize("role", ROLES)
def test_the_window_and_damage_headers_are_described_alike_for_pcaps_and_flows(role):
    paths = _schema(role)["paths"]
    for path in ("/data.pcap", "/flows"):
        responses = paths[path]["get"]["responses"]
        headers = responses["200"]["headers"]
        assert "by file name" in headers["X-PAR-Damaged"]["description"], path
        assert "X-PAR-Window" in headers and "X-PAR-Window" in responses["404"]["headers"], path
    assert {"X-PAR-Estimate-Packets", "X-PAR-Estimate-Bytes"} <= set(
        paths["/data.pcap"]["get"]["responses"]["200"]["headers"]
    )
