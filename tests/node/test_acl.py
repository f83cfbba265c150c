"""Who a node answers: PAR_NODE_ALLOW / PAR_NODE_DENY on the caller's address, and PAR_NODE_SECRET."""

from __future__ import annotations

import logging
import os
import sys
from ipaddress import ip_address, ip_network

import pytest
from django.test import Client, RequestFactory, override_settings

from api.client import client_ip, parse_hop
from parsite.envconf import plain_network
from tests.servers import run

NODE = {"ROOT_URLCONF": "parsite.urls_node", "PAR_ROLE": "node"}
REFUSED = "this node does not answer this caller"


def refused(reason: str) -> dict[str, str]:
    """A node's 403 answer: the refusal, and why, in what the caller may know."""
    return {"error": f"{REFUSED}: {reason}"}


def nets(*cidrs: str) -> list:
    return [ip_network(c) for c in cidrs]


def get(path: str = "/ping", remote: str = "127.0.0.1", **headers: str):
    return Client(REMOTE_ADDR=remote).get(path, **headers)


def request_from(remote: str, forwarded: str | None = None):
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/ping", **meta)


@override_settings(**NODE)
def test_loopback_is_allowed_by_default():
    assert get().status_code == 200
    assert get(remote="::1").status_code == 200


@override_settings(**NODE)
@pytest.mark.parametrize(
    "path", ["/ping", "/status", "/routes", "/plugins", "/data.pcap", "/schema", "/docs"]
)
def test_every_route_refuses_a_caller_outside_the_allow_list(path):
    response = get(path, remote="192.0.2.7")
    assert response.status_code == 403
    assert response.json() == refused("address 192.0.2.7 is not allowed")


@override_settings(**NODE)
def test_an_unknown_path_is_403_not_404_for_a_refused_caller():
    assert get("/no/such/thing", remote="192.0.2.7").status_code == 403
    assert get("/no/such/thing").status_code == 404


@override_settings(**NODE, PAR_NODE_ALLOW=nets("10.0.0.0/8"), PAR_NODE_DENY=nets("10.9.0.0/16"))
def test_deny_wins_over_allow():
    assert get(remote="10.1.2.3").status_code == 200
    assert get(remote="10.9.2.3").status_code == 403


@override_settings(**NODE, PAR_NODE_ALLOW=nets("10.0.0.0/8"))
def test_an_ipv4_mapped_peer_is_judged_as_ipv4():
    assert get(remote="::ffff:10.1.2.3").status_code == 200
    assert get(remote="::ffff:192.0.2.1").status_code == 403


@override_settings(**NODE, PAR_NODE_ALLOW=nets("10.0.0.0/8"))
def test_a_forged_forwarded_header_does_not_get_a_denied_peer_in():
    response = get(remote="192.0.2.7", HTTP_X_FORWARDED_FOR="10.0.0.1", HTTP_X_REAL_IP="10.0.0.1")
    assert response.status_code == 403


@override_settings(**NODE, PAR_NODE_DENY=nets("127.0.0.2/32"))
def test_a_forwarded_header_cannot_get_an_allowed_peer_refused_or_disguised():
    # Without trusted proxies the header is ignored both ways.
    assert get(remote="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.2").status_code == 200
    assert get(remote="127.0.0.2", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 403


@override_settings(PAR_TRUSTED_PROXIES=nets("10.0.0.1/32", "10.0.0.2/32"))
@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("192.0.2.7", "10.9.9.9", "192.0.2.7"),  # not our proxy: its header is not believed
        ("10.0.0.1", "198.51.100.4", "198.51.100.4"),  # one proxy: whom it forwards for
        ("10.0.0.1", "6.6.6.6, 198.51.100.4", "198.51.100.4"),  # what the caller wrote is not believed
        ("10.0.0.1", "6.6.6.6, 198.51.100.4, 10.0.0.2", "198.51.100.4"),  # two proxies of ours
        ("10.0.0.1", "198.51.100.4:5555", "198.51.100.4"),
        ("10.0.0.1", "[2001:db8::4]:443", "2001:db8::4"),
        ("10.0.0.1", "2001:db8::4", "2001:db8::4"),
        ("10.0.0.1", None, None),  # our proxy forwards for nobody: nobody
        ("10.0.0.1", " , ", None),
        ("10.0.0.1", "10.0.0.2", "10.0.0.2"),  # nothing but proxies: the last one
        ("10.0.0.1", "1.2.3.4, garbage", None),  # our proxy wrote nonsense: nobody
        ("10.0.0.1", "garbage, 198.51.100.4", "198.51.100.4"),  # the caller's own nonsense is not read
        ("10.0.0.1", "6.6.6.6, 198.51.100.4, 10.0.0.1, 10.0.0.2", "198.51.100.4"),
        ("10.0.0.1", ", ".join(["10.0.0.2"] * 20), "10.0.0.2"),  # a chain longer than any real one
        ("::ffff:10.0.0.1", "198.51.100.4", "198.51.100.4"),
    ],
)
def test_forwarded_for_is_read_from_the_right_only_through_trusted_proxies(remote, forwarded, expected):
    found = client_ip(request_from(remote, forwarded))
    assert found == (ip_address(expected) if expected else None)


@override_settings(PAR_TRUSTED_PROXIES=nets("10.0.0.1/32"))
@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_REAL_IP": "198.51.100.4"},
        {"HTTP_FORWARDED": "for=198.51.100.4"},
        {"HTTP_CLIENT_IP": "198.51.100.4", "HTTP_X_CLUSTER_CLIENT_IP": "198.51.100.4"},
        {"HTTP_CF_CONNECTING_IP": "198.51.100.4", "HTTP_TRUE_CLIENT_IP": "198.51.100.4"},
    ],
)
def test_no_forwarding_header_but_x_forwarded_for_is_read_even_from_our_proxy(headers):
    # Any client can write these; our proxies overwrite none of them.
    assert client_ip(RequestFactory().get("/ping", REMOTE_ADDR="10.0.0.1", **headers)) is None
    meta = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9", **headers}
    assert client_ip(RequestFactory().get("/ping", **meta)) == ip_address("203.0.113.9")


@override_settings(
    **NODE, PAR_TRUSTED_PROXIES=nets("127.0.0.1/32"), PAR_NODE_ALLOW=nets("10.0.0.0/8"), PAR_NODE_DENY=nets()
)
def test_behind_a_trusted_proxy_the_forwarded_caller_is_judged():
    assert get(remote="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1").status_code == 200
    assert get(remote="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1, 192.0.2.7").status_code == 403
    assert get(remote="127.0.0.1").status_code == 403  # the proxy is not a caller in its own right


@override_settings(**NODE, PAR_TRUSTED_PROXIES=nets("127.0.0.1/32"))
@pytest.mark.parametrize("forwarded", [None, "", " , "])
def test_a_trusted_proxy_forwarding_for_nobody_is_refused_with_the_reason_logged(forwarded, caplog):
    # nginx on the node host with the loopback default allow list: the proxy is not a way in for all.
    caplog.set_level(logging.WARNING, logger="node.acl")
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    response = get(remote="127.0.0.1", **headers)
    assert response.status_code == 403
    assert response.json() == refused("caller unknown: trusted proxy 127.0.0.1 sent no X-Forwarded-For")
    assert "trusted proxy 127.0.0.1 sent no X-Forwarded-For" in caplog.text


@override_settings(**NODE, PAR_TRUSTED_PROXIES=nets("127.0.0.1/32"))
def test_a_trusted_proxy_forwarding_nonsense_is_refused_with_the_reason_logged(caplog):
    caplog.set_level(logging.WARNING, logger="node.acl")
    assert get(remote="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1, garbage").status_code == 403
    assert "trusted proxy 127.0.0.1 sent an unreadable X-Forwarded-For" in caplog.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (" ::1 ", "::1"),
        ("unknown", None),
        ("", None),
        ("1.2.3.4:x", None),
        ("[::1]x", None),
        ("[::1]:80", "::1"),
    ],
)
def test_parse_hop(text, expected):
    assert parse_hop(text) == (ip_address(expected) if expected else None)


@override_settings(**NODE, PAR_NODE_SECRET="s3cret-value-\u00e9")
def test_the_node_secret_is_required_when_set(caplog):
    caplog.set_level(logging.WARNING, logger="node.acl")
    assert get().status_code == 403
    assert get(HTTP_X_PAR_NODE_SECRET="wrong").status_code == 403
    assert get(HTTP_X_PAR_NODE_SECRET="s3cret-value-\u00e9").status_code == 200
    # As a WSGI server hands a UTF-8 header over: its bytes decoded as latin-1.
    wire = "s3cret-value-\u00e9".encode().decode("latin-1")
    assert get(HTTP_X_PAR_NODE_SECRET=wire).status_code == 200
    assert "missing node secret" in caplog.text and "wrong node secret" in caplog.text
    assert "s3cret" not in caplog.text and "wrong\n" not in caplog.text


@override_settings(**NODE, PAR_NODE_SECRET="s3cret", PAR_NODE_ALLOW=nets("10.0.0.0/8"))
def test_the_secret_does_not_open_the_door_to_a_refused_address():
    assert get(remote="192.0.2.7", HTTP_X_PAR_NODE_SECRET="s3cret").status_code == 403


@override_settings(**NODE)
def test_a_refusal_is_logged_with_the_address_and_path(caplog):
    caplog.set_level(logging.WARNING, logger="node.acl")
    get("/status?src_addr=1.1.1.1", remote="192.0.2.7")
    assert "192.0.2.7" in caplog.text and "/status" in caplog.text
    assert "src_addr" not in caplog.text  # the path, never the query


@pytest.mark.parametrize("variable", ["PAR_NODE_ALLOW", "PAR_NODE_DENY", "PAR_TRUSTED_PROXIES"])
def test_ipv4_mapped_networks_in_the_settings_are_read_as_ipv4(variable, tmp_path):
    # Callers' mapped addresses are judged unmapped: a mapped network left as written never matched.
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{variable})"
    value = "::ffff:127.0.0.1/128, ::ffff:10.0.0.0/104, 2001:db8::/32, ::ffff:0:0/96"
    result = run([sys.executable, "-c", code], {**os.environ, variable: value, "PAR_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    expected = nets("127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0")
    assert result.stdout.strip() == repr(expected)


@override_settings(**NODE)
def test_a_mapped_deny_entry_refuses_the_ipv4_caller_and_a_mapped_allow_entry_admits_it():
    with override_settings(PAR_NODE_DENY=[plain_network("::ffff:127.0.0.1/128")]):
        assert get(remote="127.0.0.1").status_code == 403
        assert get(remote="::ffff:127.0.0.1").status_code == 403
    with override_settings(PAR_NODE_ALLOW=[plain_network("::ffff:192.0.2.0/120")]):
        assert get(remote="192.0.2.7").status_code == 200
        assert get(remote="127.0.0.1").status_code == 403
