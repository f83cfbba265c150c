"""How a key is presented, and which keys are refused."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from collector.models import ApiKey


@pytest.mark.parametrize(
    "how",
    [
        lambda key: {"headers": {"Authorization": f"Api-Key {key}"}},
        lambda key: {"headers": {"Authorization": f"api-key {key}"}},
        lambda key: {"headers": {"X-Api-Key": key}},
        lambda key: {"data": {"api_key": key}},
    ],
    ids=["authorization", "authorization-any-case", "x-api-key", "query-parameter"],
)
def test_a_key_is_accepted_the_three_documented_ways(api, node1_key, how):
    response = api.get_as(None, "/ping", **how(node1_key.key))
    assert response.status_code == 200


def test_an_unknown_key_is_refused(api, nodes):
    response = api.get("/ping", headers={"X-Api-Key": "par_" + "x" * 43})
    assert response.status_code == 401
    assert response.json() == {"error": "unknown API key"}


def test_a_revoked_key_is_refused(api, node1_key):
    node1_key.row.active = False
    node1_key.row.save()
    response = api.get_as(node1_key, "/ping")
    assert response.status_code == 401
    assert response.json() == {"error": "this API key has been revoked"}


def test_an_expired_key_is_refused_and_a_future_expiry_is_not(api, node1_key):
    node1_key.row.expires = timezone.now() + timedelta(hours=1)
    node1_key.row.save()
    assert api.get_as(node1_key, "/ping").status_code == 200
    node1_key.row.expires = timezone.now() - timedelta(seconds=1)
    node1_key.row.save()
    response = api.get_as(node1_key, "/ping")
    assert response.status_code == 401
    assert response.json() == {"error": "this API key has expired"}


def test_a_malformed_authorization_header_is_refused_precisely(api, node1_key):
    response = api.get("/ping", headers={"Authorization": f"Api-Key {node1_key.key} extra"})
    assert response.status_code == 401
    assert "Authorization" in response.json()["error"]
    assert node1_key.key not in response.content.decode()


def test_another_authorization_scheme_is_not_ours(api, node1_key):
    response = api.get("/ping", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert response.status_code == 401
    assert response.json() == {"error": "a valid API key is required"}
    # ...and a key given another way still counts.
    both = api.get("/ping", {"api_key": node1_key.key}, headers={"Authorization": "Bearer abc"})
    assert both.status_code == 200


def test_the_authorization_header_wins_over_the_query_parameter(api, node1_key, nogrant_key):
    response = api.get("/nodes/list", {"api_key": node1_key.key}, headers=nogrant_key.headers)
    assert response.json() == {}


def test_no_key_appears_in_errors_or_log_lines(api, node1_key, caplog):
    revoked = node1_key
    revoked.row.active = False
    revoked.row.save()
    wrong = revoked.key[:-4] + "AAAA"
    with caplog.at_level(logging.DEBUG):
        bodies = [
            api.get("/data.pcap", {"api_key": revoked.key, "node_id": "1"}).content,
            api.get("/keys", headers={"X-Api-Key": wrong}).content,
            api.get("/ping", headers={"Authorization": f"Api-Key {wrong} x"}).content,
        ]
    for text in [*(b.decode() for b in bodies), caplog.text]:
        assert revoked.key not in text and wrong not in text


def test_the_seed_uuid_key_is_accepted_in_any_case(api, nodes):
    legacy = "54B22F56-9A84-4893-BC70-332E3B5DED66"
    row = ApiKey(name="seed")
    row.set_key(legacy)
    row.save()
    assert row.prefix == "54b22f56"
    assert api.get("/ping", headers={"X-Api-Key": legacy.lower()}).status_code == 200
    assert api.get("/ping", headers={"X-Api-Key": legacy}).status_code == 200
