"""Django admin: a new key is shown once; keys, nodes and grants are managed; the log is read-only."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from collector import keys
from collector.models import ApiKey, Node, RequestLog


@pytest.fixture
def staff(client, db):
    user = User.objects.create_superuser("root", "root@example.org", "a long passphrase 42")
    client.force_login(user)
    return client


def test_adding_a_key_shows_it_once_and_stores_only_its_hash(staff, nodes):
    response = staff.post(
        "/admin/collector/apikey/add/",
        {"name": "incident response", "owner": "csirt", "nodes": ["1"], "active": "on"},
    )
    assert response.status_code == 200
    key = re.search(r'id="new-api-key"[^>]*>([^<]+)<', response.content.decode()).group(1)
    row = ApiKey.objects.get(name="incident response")
    assert key.startswith(row.prefix)
    assert ApiKey.objects.authenticate(key) == row
    assert [n.id for n in row.nodes.all()] == [1]

    for page in (f"/admin/collector/apikey/{row.pk}/change/", "/admin/collector/apikey/"):
        shown = staff.get(page)
        assert shown.status_code == 200
        assert key not in shown.content.decode()
        assert row.key_hash not in shown.content.decode()


def test_adding_a_key_draws_again_when_its_prefix_is_taken(staff, node1_key, monkeypatch):
    fresh = keys.generate_key()
    taken = node1_key.row.prefix + fresh[len(node1_key.row.prefix) :]  # another key, same shown prefix
    draws = iter([taken, fresh])
    monkeypatch.setattr(keys, "generate_key", lambda: next(draws))

    response = staff.post("/admin/collector/apikey/add/", {"name": "second draw", "active": "on"})

    assert response.status_code == 200
    assert re.search(r'id="new-api-key"[^>]*>([^<]+)<', response.content.decode()).group(1) == fresh
    assert ApiKey.objects.authenticate(fresh) == ApiKey.objects.get(name="second draw")
    assert ApiKey.objects.count() == 2


def test_revoking_keys_from_the_list(staff, node1_key, api):
    response = staff.post(
        "/admin/collector/apikey/", {"action": "revoke", "_selected_action": [node1_key.row.pk]}
    )
    assert response.status_code == 302
    assert api.get_as(node1_key, "/ping").status_code == 401


def test_granting_a_node_and_marking_admin(staff, node1_key, api):
    response = staff.post(
        f"/admin/collector/apikey/{node1_key.row.pk}/change/",
        {"name": node1_key.row.name, "nodes": ["1", "2"], "active": "on", "admin": "on"},
    )
    assert response.status_code == 302
    assert api.get_as(node1_key, "/keys").status_code == 200
    assert set(api.get_as(node1_key, "/nodes/list").json()) == {"1", "2"}


def test_adding_a_node_normalizes_its_address(staff, db):
    response = staff.post(
        "/admin/collector/node/add/",
        {"id": "3", "address": "sensor3.example.org", "scheme": "https", "active": "on"},
    )
    assert response.status_code == 302
    assert Node.objects.get(pk=3).url("ping") == "https://sensor3.example.org:9002/ping"


def test_the_request_log_shows_every_node_asked_and_how_each_answered(staff, db):
    entry = RequestLog.begin("data.pcap", client_ip="192.0.2.1", query={"node_id": "1,4", "api_key": "x"})
    entry.by("par_abcdefgh")
    entry.asked([1, 4])
    entry.node_answered(1, 200, 4096)
    entry.node_answered(4, None, 0, "timed out")
    entry.finish(200, 4120)
    row = RequestLog.objects.get()
    assert (row.nodes, row.node, row.query) == ("1,4", None, "node_id=1,4")  # never the key
    page = staff.get(f"/admin/collector/requestlog/{row.pk}/change/").content.decode()
    assert "1: 200, 4096 B; 4: - timed out" in page
    assert "1,4" in staff.get("/admin/collector/requestlog/").content.decode()


def test_the_request_log_can_be_browsed_but_not_changed(staff, db):
    entry = RequestLog.objects.create(key_prefix="par_abcdefgh", node=1, status=200, bytes_sent=24)
    assert staff.get("/admin/collector/requestlog/").status_code == 200
    page = staff.get(f"/admin/collector/requestlog/{entry.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert staff.get("/admin/collector/requestlog/add/").status_code == 403
    assert staff.post(f"/admin/collector/requestlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert RequestLog.objects.filter(pk=entry.pk).exists()
