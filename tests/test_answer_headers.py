"""Headers every answer carries, under gunicorn: CSP on the page and the admin, security headers on a
node's ACL refusal, no-store on JSON, TRACE refused."""

from __future__ import annotations

import pytest
import requests

from api.headers import CONTENT_SECURITY_POLICY
from tests.collector.test_live import ANALYST, live_collector, node_env
from tests.servers import gunicorn

pytestmark = pytest.mark.slow

SECURITY = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


def has_security_headers(answer: requests.Response) -> bool:
    return all(answer.headers.get(name) == value for name, value in SECURITY.items())


def test_a_nodes_refusal_and_answers_carry_the_security_headers_and_trace_is_refused(tmp_path):
    env = node_env(tmp_path, "n")
    with gunicorn("node", {**env, "PAR_NODE_ALLOW": "10.0.0.0/8"}) as refusing:
        refused = requests.get(f"{refusing.url}/ping", timeout=10)
        traced = requests.request("TRACE", f"{refusing.url}/ping", timeout=10)
    assert refused.status_code == 403 and has_security_headers(refused)
    assert refused.headers["Cache-Control"] == "no-store"
    assert traced.status_code == 405 and traced.json() == {"error": "method TRACE is not allowed"}
    with gunicorn("node", node_env(tmp_path, "m")) as node:
        ping = requests.get(f"{node.url}/ping", timeout=10)
        traced = requests.request("TRACE", f"{node.url}/ping", timeout=10)
    assert ping.status_code == 200 and has_security_headers(ping)
    assert ping.headers["Cache-Control"] == "no-store"
    assert traced.status_code == 405 and "Content-Security-Policy" not in ping.headers


def test_the_page_and_the_admin_have_a_content_security_policy_and_json_is_never_stored(tmp_path):
    with live_collector(tmp_path, {}, {ANALYST: ["1"]}) as (collector, _, _):

        def get(path: str, method: str = "GET", **params: str) -> requests.Response:
            return requests.request(method, f"{collector.url}{path}", params=params, timeout=10)

        pages = [get("/ui/login"), get("/admin/login/"), get("/ui/", allow_redirects=False)]
        ping, refused, nodes = (
            get("/ping", api_key=ANALYST),
            get("/ping"),
            get("/nodes/list", api_key=ANALYST),
        )
        sheet = get("/flows", api_key=ANALYST, output="csv", node_id="7", start_time="-1m")
        traced = [get(path, "TRACE", api_key=ANALYST) for path in ("/ping", "/ui/login", "/admin/login/")]
    assert [page.status_code for page in pages[:2]] == [200, 200]
    assert all(page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY for page in pages[:2])
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    for answer in (ping, refused, nodes, sheet):
        assert answer.headers["Cache-Control"] == "no-store", (answer.url, answer.headers)
        assert has_security_headers(answer)
    assert [answer.status_code for answer in traced] == [405, 405, 405]
