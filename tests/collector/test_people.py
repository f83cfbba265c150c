"""People and their grants: a superuser has the admin grant, grantnodes grants an account nodes,
answers speak of the account, and the admin warns when a key or user is saved granting nothing."""

from __future__ import annotations

import html
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from collector.models import ApiKey, UserGrant

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def quick_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser(nodes):
    return get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)


@pytest.fixture
def analyst(nodes):
    return get_user_model().objects.create_user("analyst", password=PASSWORD)


def grantnodes(*args: str) -> str:
    out = StringIO()
    call_command("grantnodes", *args, stdout=out)
    return out.getvalue().strip()


def test_a_superuser_made_with_createsuperuser_has_the_admin_grant(superuser):
    client = logged_in(superuser)
    page = client.get("/ui/").content.decode()
    assert "every node (admin)" in page and "nodes none" not in page
    assert client.get("/nodes/list").json().keys() == {"1", "2"}
    assert client.get("/keys").status_code == 200  # the admin grant's list of keys
    assert not UserGrant.objects.get(user=superuser).admin  # in effect, not written


def test_an_account_without_a_grant_is_told_of_the_account_not_a_key(analyst):
    answer = logged_in(analyst).get("/flows", {"node_id": "all", "start_time": "-15m"})
    assert answer.status_code == 404
    assert answer.json()["error"] == (
        "no node to ask: this account may query no active node (an administrator grants nodes)"
    )
    refused = logged_in(analyst).get("/flows", {"node_id": "1", "start_time": "-15m"})
    assert refused.status_code == 403
    assert refused.json()["error"] == "this account may not query that node"


def test_a_key_without_a_grant_is_still_told_of_the_key(api, nogrant_key):
    answer = api.get_as(nogrant_key, "/flows", {"node_id": "all", "start_time": "-15m"})
    assert answer.status_code == 404
    assert "this API key may query no active node" in answer.json()["error"]


def test_grantnodes_grants_an_account_nodes_and_the_page_shows_them(analyst):
    assert grantnodes("analyst", "--nodes", "1,2") == "analyst may now query nodes 1, 2"
    client = logged_in(analyst)
    assert "nodes 1, 2" in client.get("/ui/").content.decode()
    assert client.get("/nodes/list").json().keys() == {"1", "2"}
    assert grantnodes("analyst", "--all-nodes") == "analyst may now query every node"
    assert grantnodes("analyst", "--nodes", "2") == "analyst may now query nodes 2"
    grant = UserGrant.objects.get(user=analyst)
    assert not grant.all_nodes and [n.id for n in grant.nodes.all()] == [2]
    assert grantnodes("analyst", "--admin").startswith("analyst may now query admin")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody", "--nodes", "1"), "no such user: 'nobody'"),
        (("analyst", "--nodes", "1,7"), "no such node: 7"),
        (("analyst", "--nodes", "x"), "'x' is not a node number"),
    ],
)
def test_grantnodes_refuses_what_does_not_exist(analyst, args, message):
    with pytest.raises(CommandError, match=message):
        grantnodes(*args)
    assert not UserGrant.objects.filter(user=analyst).exists()


def warnings_of(response) -> list[str]:
    return [html.unescape(str(m)) for m in response.context["messages"] if m.level_tag == "warning"]


def test_the_admin_warns_when_a_key_is_saved_granting_nothing(superuser):
    admin = logged_in(superuser)
    added = admin.post("/admin/collector/apikey/add/", {"name": "forgotten", "active": "on"}, follow=True)
    assert warnings_of(added) == [
        "The API key 'forgotten' may query no node yet: grant it admin, every node or some nodes."
    ]
    granted = admin.post(
        "/admin/collector/apikey/add/", {"name": "soc", "nodes": ["1"], "active": "on"}, follow=True
    )
    assert warnings_of(granted) == []
    row = ApiKey.objects.get(name="soc")
    changed = admin.post(
        f"/admin/collector/apikey/{row.pk}/change/", {"name": "soc", "active": "on"}, follow=True
    )
    assert warnings_of(changed) == [
        "The API key 'soc' may query no node yet: grant it admin, every node or some nodes."
    ]


def test_the_admin_warns_when_a_user_is_saved_granting_nothing(superuser, analyst):
    admin = logged_in(superuser)
    form = {
        "username": "analyst",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    saved = admin.post(f"/admin/auth/user/{analyst.pk}/change/", form, follow=True)
    assert any("analyst may query no node on the web page yet" in m for m in warnings_of(saved)), warnings_of(
        saved
    )
    grant = admin.post("/admin/collector/usergrant/add/", {"user": analyst.pk, "nodes": []}, follow=True)
    assert warnings_of(grant) == [
        "The user 'analyst' may query no node yet: grant it admin, every node or some nodes."
    ]
    grantnodes("analyst", "--nodes", "1")
    assert warnings_of(admin.post(f"/admin/auth/user/{analyst.pk}/change/", form, follow=True)) == []
