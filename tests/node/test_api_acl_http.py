"""The node ACL over real HTTP: a forged X-Forwarded-For does not get a denied caller in."""

from __future__ import annotations

import pytest
import requests

from tests.servers import gunicorn

pytestmark = pytest.mark.slow


def node_env(tmp_path, **extra: str) -> dict[str, str]:
    (tmp_path / "capture").mkdir(exist_ok=True)
    (tmp_path / "filed").mkdir(exist_ok=True)
    return {
        "PAR_DATA_DIR": str(tmp_path),
        "PAR_CAPTURE_DIR": str(tmp_path / "capture"),
        "PAR_FILER_DIR": str(tmp_path / "filed"),
        **extra,
    }


FORGED = {
    "X-Forwarded-For": "10.0.0.1",
    "X-Real-IP": "10.0.0.1",
    "Forwarded": "for=10.0.0.1",
    "Client-IP": "10.0.0.1",
    "CF-Connecting-IP": "10.0.0.1",
    "True-Client-IP": "10.0.0.1",
}


def test_forged_forwarding_headers_from_a_denied_address_are_refused(tmp_path):
    env = node_env(tmp_path, PAR_NODE_ALLOW="10.0.0.0/8,127.0.0.0/8", PAR_NODE_DENY="127.0.0.1/32")
    with gunicorn("node", env) as node:
        for path in ("/ping", "/status", "/data.pcap", "/schema", "/nothing-here"):
            answer = requests.get(f"{node.url}{path}", headers=FORGED, timeout=10)
            assert answer.status_code == 403, path
            assert answer.json() == {
                "error": "this node does not answer this caller: address 127.0.0.1 is not allowed"
            }
        log = node.log()
    assert "refused GET '/ping': address 127.0.0.1 not allowed" in log


def test_a_denied_address_cannot_pose_as_forwarded_by_a_proxy_it_is_not(tmp_path):
    # Only 127.0.0.2 is our proxy; the caller (127.0.0.1) claims to be forwarded for an allowed address.
    env = node_env(tmp_path, PAR_NODE_ALLOW="10.0.0.0/8", PAR_TRUSTED_PROXIES="127.0.0.2/32")
    with gunicorn("node", env) as node:
        answer = requests.get(f"{node.url}/ping", headers={"X-Forwarded-For": "10.0.0.1"}, timeout=10)
        assert answer.status_code == 403


def test_behind_a_trusted_proxy_the_forwarded_address_decides(tmp_path):
    env = node_env(tmp_path, PAR_NODE_ALLOW="10.0.0.0/8", PAR_TRUSTED_PROXIES="127.0.0.1/32")
    with gunicorn("node", env) as node:
        allowed = requests.get(f"{node.url}/ping", headers={"X-Forwarded-For": "10.0.0.1"}, timeout=10)
        assert allowed.status_code == 200
        # The caller wrote an allowed address, our proxy appended the real (denied) one.
        forged = {"X-Forwarded-For": "10.0.0.1, 192.0.2.7"}
        assert requests.get(f"{node.url}/ping", headers=forged, timeout=10).status_code == 403


def test_the_node_secret_over_http_and_never_in_the_log(tmp_path):
    secret = "node-secret-4f9a1c"
    with gunicorn("node", node_env(tmp_path, PAR_NODE_SECRET=secret)) as node:
        assert requests.get(f"{node.url}/status", timeout=10).status_code == 403
        wrong = requests.get(f"{node.url}/status", headers={"X-PAR-Node-Secret": "guess"}, timeout=10)
        assert wrong.status_code == 403
        right = requests.get(f"{node.url}/status", headers={"X-PAR-Node-Secret": secret}, timeout=10)
        assert right.status_code == 200
        log = node.log()
    assert "wrong node secret" in log and secret not in log and "guess" not in log
