"""The web page's login and the grants of its users: a session stands where a key would."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from collector.models import RequestLog, UserGrant

PASSWORD = "correct horse battery staple"
FLOW = {"src_addr": "10.0.0.1", "src_port": "1234", "dst_addr": "10.0.0.2", "dst_port": "80"}
FLOW |= {"start_time": "1700000000", "end_time": "1700000060"}


@pytest.fixture(autouse=True)
def quick_passwords(settings) -> None:
    """The fastest hasher: these tests are about who may do what, not about password storage."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(name: str, **grant) -> Client:
    """A logged-in browser of a Django account with the grant given (none when empty)."""
    user = get_user_model().objects.create_user(name, password=PASSWORD)
    if grant:
        nodes = grant.pop("nodes", [])
        row = UserGrant.objects.create(user=user, **grant)
        row.nodes.set(nodes)
    client = Client()
    client.force_login(user)  # the login itself is tested through /ui/login below
    return client


@pytest.fixture
def analyst(nodes) -> Client:
    return make_user("analyst", nodes=[nodes[1]])


@pytest.fixture
def chief(nodes) -> Client:
    return make_user("chief", admin=True)


def test_the_page_asks_for_a_login_first(db):
    response = Client().get("/ui/")
    assert response.status_code == 302
    assert response["Location"] == "/ui/login?next=/ui/"


def test_a_django_account_logs_in_and_gets_the_page(nodes):
    get_user_model().objects.create_user("analyst", password=PASSWORD)
    client = Client()
    form = client.get("/ui/login")
    assert form.status_code == 200 and b'name="username"' in form.content
    response = client.post("/ui/login", {"username": "analyst", "password": PASSWORD, "next": "/ui/"})
    assert response.status_code == 302 and response["Location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200
    for name in ("src_addr", "src_port", "dst_addr", "dst_port", "proto", "community_id"):
        assert f'name="{name}"'.encode() in page.content
    for name in ("start_time", "end_time", "node_id"):
        assert f'name="{name}"'.encode() in page.content
    assert b"/static/ui/par.js" in page.content and b"/static/ui/par.css" in page.content
    assert b"nodes none" in page.content  # no grant yet: the page says so


def test_a_wrong_password_is_refused_on_the_page(db):
    get_user_model().objects.create_user("analyst", password=PASSWORD)
    response = Client().post("/ui/login", {"username": "analyst", "password": "nope"})
    assert response.status_code == 200 and b"did not match" in response.content


def test_a_user_sees_the_nodes_of_their_grant(analyst, chief):
    assert analyst.get("/nodes/list").json() == {"1": analyst_node_address()}
    assert sorted(chief.get("/nodes/list").json()) == ["1", "2"]


def analyst_node_address() -> str:
    from collector.models import Node

    return Node.objects.get(pk=1).address


def test_a_user_may_not_query_a_node_outside_their_grant(analyst):
    response = analyst.get("/data.pcap", {**FLOW, "node_id": "2"})
    assert response.status_code == 403
    assert "may not query" in response.json()["error"]


def test_a_user_without_a_grant_queries_no_node(nodes):
    client = make_user("visitor")
    response = client.get("/data.pcap", {**FLOW, "node_id": "1"})
    assert response.status_code == 403
    assert client.get("/nodes/list").json() == {}


def test_only_an_admin_grant_lists_the_keys(analyst, chief):
    assert analyst.get("/keys").status_code == 403
    assert chief.get("/keys").status_code == 200


def test_a_logged_out_browser_is_no_user_of_the_api(db):
    response = Client().get("/nodes/list")
    assert response.status_code == 401


def test_a_users_download_is_in_the_request_log_under_their_name(analyst):
    response = analyst.get("/data.pcap", {**FLOW, "node_id": "1"})  # node 1 is unreachable: a 502
    assert response.status_code == 502
    entry = RequestLog.objects.get()
    assert entry.user.username == "analyst"
    assert entry.key_prefix == ""
    assert entry.status == 502


def test_a_key_still_wins_over_a_session(analyst, node2_key):
    response = analyst.get("/nodes/list", headers=node2_key.headers)
    assert list(response.json()) == ["2"]


def test_logging_out_ends_the_session(analyst):
    page = analyst.get("/ui/")
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else None
    response = analyst.post("/ui/logout", {"csrfmiddlewaretoken": token} if token else {})
    assert response.status_code == 302 and response["Location"] == "/ui/login"
    assert analyst.get("/nodes/list").status_code == 401


def test_format_is_the_apis_parameter_not_a_renderer(analyst):
    response = analyst.get("/data.pcap", {**FLOW, "node_id": "1", "format": "pcapng"})
    assert response.status_code == 502  # asked of the (unreachable) node, not refused as a renderer
