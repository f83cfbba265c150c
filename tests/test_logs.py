"""What the servers write to their logs, under gunicorn: no secret in any line, one line per event."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from parsite.logs import REDACTED, scrub
from pcapgen import ether, pcap_header, tcp, write_pcap
from tests.collector.test_live import ANALYST, live_collector, node_env
from tests.node.test_api_http import wait_for
from tests.servers import SEED_QUERY, Server, gunicorn

NEW_KEY = "par_" + "Zq8" * 14  # the shape createapikey makes


class DyingNode:
    """A node that answers 200 with a pcap header, promises more, and closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\n"
                conn.sendall(head + b"Content-Length: 100000\r\n\r\n" + pcap_header())

    def close(self) -> None:
        self.listener.close()


def raw_request(url: str, head: bytes) -> bytes:
    """Send ``head`` as is (no encoding of anything) and read the answer to its end."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def seed_query_unencoded(key: str) -> bytes:
    """The seed README's request as a careless client sends it: spaces and all, key in the query."""
    query = f"node_id=1&src_addr=1.1.1.1&src_port=111&dst_addr=2.2.2.2&dst_port=222&start_time=2015-02-26 4pm&end_time=2015-02-26 5pm&api_key={key}"
    return f"GET /data.pcap?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


def lines_added(server: Server, before: str) -> list[str]:
    return [line for line in server.log()[len(before) :].splitlines() if line.strip()]


@pytest.fixture
def dying() -> Iterator[DyingNode]:
    node = DyingNode()
    yield node
    node.close()


def test_scrub_removes_keys_in_every_form_it_meets():
    lines = [
        f"GET /data.pcap?node_id=1&api_key={ANALYST}&x=1 HTTP/1.1",
        f"Invalid HTTP Version: '4pm&end_time=5pm&api_key={ANALYST} HTTP/1.1'",
        f"{{'HTTP_X_API_KEY': '{ANALYST}', 'HTTP_AUTHORIZATION': 'Api-Key {ANALYST}'}}",
        f"X-Api-Key: {ANALYST}\r\nAuthorization: Api-Key {ANALYST}",
        f"api_key%3D{ANALYST}",
        f"the key {NEW_KEY} in free text",
        "X-PAR-Node-Secret: s3cret-of-the-node",
    ]
    for line in lines:
        clean = scrub(line)
        assert ANALYST not in clean and NEW_KEY not in clean and "s3cret" not in clean, clean
        assert REDACTED in clean
    assert scrub("GET /ping 200 key prefix par_AbCd1234") == "GET /ping 200 key prefix par_AbCd1234"


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_no_key_reaches_any_log_after_hostile_requests(tmp_path, dying, log_format):
    nodes = {"1": dying.address}
    env = {"PAR_LOG_FORMAT": log_format}
    with live_collector(tmp_path, nodes, {ANALYST: ["1"]}, **env) as (collector, _, _):
        # A malformed request line, key included: gunicorn refuses it and logs it.
        raw_request(collector.url, seed_query_unencoded(ANALYST))
        raw_request(collector.url, seed_query_unencoded(NEW_KEY))
        # A node failing before its first record, with the key in each of its three places.
        query = {"node_id": "1", "src_addr": "1.1.1.1", "start_time": "2015-02-26T16:00:00Z"}
        query["end_time"] = "2015-02-26T16:05:00Z"
        for params, headers in (({"api_key": ANALYST}, {}), ({}, {"X-Api-Key": ANALYST})):
            # A cut answer is what the client sees of a node failing mid-stream.
            with contextlib.suppress(requests.RequestException):
                requests.get(
                    f"{collector.url}/data.pcap", params={**query, **params}, headers=headers, timeout=10
                )
        auth = {"Authorization": f"Api-Key {ANALYST}", "Host": "evil.example"}
        requests.get(f"{collector.url}/data.pcap?api_key={ANALYST}", headers=auth, timeout=10)
        requests.get(f"{collector.url}/no/such/path?api_key={ANALYST}", timeout=10)
        log = collector.log()
    assert "Invalid request from ip=127.0.0.1" in log  # the malformed line was logged...
    assert REDACTED in log
    assert ANALYST not in log and NEW_KEY not in log  # ...without its key
    if log_format == "json":
        for line in log.splitlines():
            if line.startswith("{"):
                json.loads(line)


@pytest.mark.slow
def test_no_key_reaches_a_nodes_log(tmp_path):
    env = node_env(tmp_path, "n1")
    with gunicorn("node", env) as node:
        raw_request(node.url, seed_query_unencoded(ANALYST))
        log = node.log()
    assert "Invalid request from ip=127.0.0.1" in log
    assert ANALYST not in log


@pytest.mark.slow
def test_a_refused_caller_with_a_bad_host_gets_403_and_one_log_line(tmp_path):
    env = {**node_env(tmp_path, "n"), "PAR_NODE_ALLOW": "10.0.0.0/8"}
    with gunicorn("node", env) as node:
        before = node.log()
        answer = requests.get(f"{node.url}/ping", headers={"Host": "evil.example"}, timeout=10)
        assert answer.status_code == 403
        assert answer.json()["error"].startswith("this node does not answer this caller: address ")
        added = [line for line in lines_added(node, before) if "gunicorn.access" not in line]
    assert len(added) == 1, added
    assert "127.0.0.1" in added[0] and "not allowed" in added[0]


@pytest.mark.slow
def test_a_disallowed_host_is_one_line_naming_the_caller(tmp_path):
    with gunicorn("node", node_env(tmp_path, "n")) as node:
        before = node.log()
        for _ in range(3):
            answer = requests.get(f"{node.url}/ping", headers={"Host": "evil.example"}, timeout=10)
            assert answer.status_code == 400
        added = [line for line in lines_added(node, before) if "gunicorn.access" not in line]
    assert len(added) == 3, added
    assert all(
        "Invalid HTTP_HOST header: 'evil.example'" in line and "from 127.0.0.1" in line for line in added
    )
    assert "Traceback" not in "".join(added)


@pytest.mark.slow
def test_json_lines_on_both_logs_with_times_and_no_query(tmp_path):
    env = {**node_env(tmp_path, "n"), "PAR_LOG_FORMAT": "json"}
    seen = 978368520  # 2001-01-01 17:02 UTC, inside the seed's window
    packet = ether(tcp("1.1.1.1", 111, "2.2.2.2", 222, b"hello"))
    write_pcap(Path(env["PAR_CAPTURE_DIR"]) / f"pcap.{seen - 60}", [(seen * 10**9, packet)])
    with gunicorn("node", env) as node:
        before = node.log()
        requests.get(f"{node.url}/ping?x=secret-query", timeout=10)
        requests.get(f"{node.url}/data.pcap", params=SEED_QUERY, timeout=10)

        # The access log is written once the answer is sent: wait for both lines (the start-up's
        # own /ping may land after ``before`` too).
        def both_written() -> bool:
            access = [line for line in node.log()[len(before) :].splitlines() if '"gunicorn.access"' in line]
            return len(access) >= 2 and any("/data.pcap" in line for line in access)

        assert wait_for(both_written)
        added = lines_added(node, before)
    objects = [json.loads(line) for line in added]
    access = [o for o in objects if o["logger"] == "gunicorn.access"]
    assert {(o["method"], o["path"], o["status"]) for o in access} == {
        ("GET", "/ping", 200),
        ("GET", "/data.pcap", 200),
    }
    assert all(o["time"].endswith("Z") and "T" in o["time"] for o in objects)
    assert "secret-query" not in "".join(added)
    served = [o["message"] for o in objects if "served" in o["message"]]
    assert len(served) == 1 and "[2001-01-01T17:01:00Z, 2001-01-01T17:05:00Z]" in served[0], served


FORGED = "2026-01-01T00:00:00.000Z INFO par.audit: audit data.pcap by par_forged"


@pytest.mark.slow
def test_no_value_a_caller_sends_can_forge_a_plain_log_line(tmp_path, dying):
    """A newline, CR, ESC or BEL in a login name or a query value is escaped, not written raw."""
    hostile = f"x\n{FORGED}\r\x1b]0;owned\x07"
    plain_http = {"DJANGO_SECURE_COOKIES": "false"}  # the login form's CSRF cookie, over plain HTTP
    with live_collector(tmp_path, {"1": dying.address}, {ANALYST: ["1"]}, **plain_http) as (collector, _, _):
        session = requests.Session()
        session.get(f"{collector.url}/admin/login/", timeout=10)
        login = {
            "username": hostile,
            "password": "wrong",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        }
        refused = session.post(f"{collector.url}/admin/login/", login, timeout=10)
        assert refused.status_code == 200 and "Please enter the correct" in refused.text
        query = {"node_id": "1", "src_addr": hostile, "api_key": ANALYST}
        assert requests.get(f"{collector.url}/flows", query, timeout=10).status_code == 400
        assert wait_for(lambda: "audit flows" in collector.log() and "login failure by" in collector.log())
        log = collector.log()
    assert not any(line.startswith(FORGED) for line in log.splitlines())
    assert "\x1b" not in log and "\x07" not in log and "\r" not in log
    assert log.count(f"x\\n{FORGED}\\r\\u001b]0;owned\\u0007") == 2  # the login's, the audit's
