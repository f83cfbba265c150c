"""The node's API over real HTTP (gunicorn on loopback): the seed's tests, streaming, disconnects, the schema."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import pytest
import requests

from pcapgen import ether, pcap_header, pcap_record, tcp
from tests.node.captures import (
    A_PORT,
    B_PORT,
    FILE_SECONDS,
    NS,
    T0,
    A,
    B,
    make_big_capture,
    make_tree,
    window,
)
from tests.servers import Server, gunicorn

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def env_for(root: Path, capture_dir: Path, filer_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PAR_DATA_DIR": str(root),
        "PAR_CAPTURE_DIR": str(capture_dir),
        "PAR_FILER_DIR": str(filer_dir),
        "PAR_MAX_WINDOW": "3600",
        **extra,
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def node(tree):
    with gunicorn("node", env_for(tree.capture_dir.parent, tree.capture_dir, tree.filer_dir)) as server:
        yield server


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    (root / "capture").mkdir()
    (root / "filed").mkdir()
    return root, make_big_capture(root / "capture")


# --- helpers reading the server from the outside --------------------------------------------------


def worker_pid(server: Server) -> int:
    """The one worker of the gunicorn master."""
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def open_captures(pid: int, root: Path) -> int:
    """How many capture files (in root/capture or root/filed) the process holds open."""
    dirs = (f"{root / 'capture'}/", f"{root / 'filed'}/")
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(dirs)
        except OSError:
            continue  # closed while we looked
    return count


def anon_rss(pid: int) -> int:
    """Anonymous resident memory (heap), bytes: what buffering an answer would grow."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc status")


def raw_get(
    server: Server, path: str, params: dict, *, rcvbuf: int | None = None
) -> tuple[socket.socket, bytes]:
    """Send an HTTP/1.0 GET (the body then ends at EOF) and return the socket and the response head."""
    url = urlsplit(server.url)
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # keeps the server waiting on us
    sock.connect((url.hostname, url.port))
    sock.sendall(f"GET {path}?{urlencode(params)} HTTP/1.0\r\nHost: {url.netloc}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        assert data, head
        head += data
    head, _, rest = head.partition(b"\r\n\r\n")
    return sock, head + b"\r\n\r\n" + rest


def abort(sock: socket.socket) -> None:
    """Close like a crashed client: a reset, not a polite FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- the seed's node tests, over HTTP --------------------------------------------------------------


def test_seed_no_start_time_is_a_400(node):
    answer = requests.get(f"{node.url}/data.pcap", timeout=10)
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/json"
    assert "start_time" in answer.json()["error"]


def test_seed_invalid_port_is_a_400(node):
    answer = requests.get(f"{node.url}/data.pcap", {**window(T0, T0 + 60), "src_port": "65536"}, timeout=10)
    assert answer.status_code == 400
    assert "src_port" in answer.json()["error"]


def test_seed_missing_timeframe_is_a_404(node):
    params = {**window(T0, T0 + 60), "start_time": "2001-01-01 5:01pm", "end_time": "2001-01-01 5:05pm"}
    answer = requests.get(f"{node.url}/data.pcap", params, timeout=10)
    assert answer.status_code == 404
    assert answer.json() == {"error": "no capture data for that timeframe"}


def test_seed_valid_query_is_a_pcap(node, tree):
    answer = requests.get(f"{node.url}/data.pcap", window(T0, T0 + 3 * FILE_SECONDS), timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
    assert answer.headers["Content-Disposition"].startswith(
        'attachment; filename="10.0.0.1_40000-10.0.0.2_80-'
    )
    assert answer.headers.get("Transfer-Encoding") == "chunked"  # streamed, not sized in advance
    assert answer.content == tree.expected(T0 * NS, (T0 + 3 * FILE_SECONDS) * NS)


def test_the_seeds_time_form_and_proto_over_http(node, tree):
    params = {
        **window(T0, T0),
        "start_time": "2015-02-26 4pm",
        "end_time": "2015-02-26 4:01pm",
        "proto": "tcp",
    }
    answer = requests.get(f"{node.url}/data.pcap", params, timeout=10)
    assert answer.status_code == 200
    assert answer.content == tree.expected(T0 * NS, (T0 + 60) * NS, proto=6)


def test_status_routes_plugins_over_http(node, tree):
    status = requests.get(f"{node.url}/status", timeout=10).json()
    assert status["files"]["count"] == 2 and status["capture"]["live_file"]["name"] == tree.files[-1].name
    routes = requests.get(f"{node.url}/routes", timeout=10).json()
    assert "/data.pcap" in {r["path"] for r in routes}
    assert requests.get(f"{node.url}/plugins", timeout=10).json() == []


def test_docs_load_with_their_assets_from_the_node(node):
    html = requests.get(f"{node.url}/docs", timeout=10).text
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
        answer = requests.get(
            f"{node.url}/static/drf_spectacular_sidecar/swagger-ui-dist/{asset}", timeout=10
        )
        assert asset in html and answer.status_code == 200 and len(answer.content) > 10_000


# --- streaming -----------------------------------------------------------------------------------


def test_a_large_answer_streams_with_flat_memory(big):
    root, capture = big
    with gunicorn("node", env_for(root, root / "capture", root / "filed")) as node:
        pid = worker_pid(node)
        requests.get(f"{node.url}/data.pcap", {**capture.params, "dst_port": "1"}, timeout=30)  # warm up
        baseline = anon_rss(pid)
        peak, digest, size = baseline, hashlib.sha256(), 0
        started = time.monotonic()
        with requests.get(f"{node.url}/data.pcap", capture.params, stream=True, timeout=30) as answer:
            assert answer.status_code == 200
            for chunk in answer.iter_content(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                peak = max(peak, anon_rss(pid))
        elapsed = time.monotonic() - started
    assert size == capture.answer_bytes and digest.hexdigest() == capture.answer_sha256
    growth = peak - baseline
    print(f"\n{size / 1e6:.1f} MB answer in {elapsed:.2f} s, worker heap grew {growth / 1e6:.1f} MB")
    assert growth < 24 * 1024 * 1024, (
        f"the worker grew {growth / 1e6:.1f} MB for a {size / 1e6:.0f} MB answer"
    )


def test_a_client_that_goes_away_stops_the_work_and_frees_the_files(big):
    root, capture = big
    with gunicorn("node", env_for(root, root / "capture", root / "filed")) as node:
        pid = worker_pid(node)
        assert open_captures(pid, root) == 0
        sock, head = raw_get(node, "/data.pcap", capture.params, rcvbuf=32 * 1024)
        assert b" 200 " in head.split(b"\r\n")[0]
        sock.recv(64 * 1024)
        assert open_captures(pid, root) > 0  # the answer is under way, the capture is open
        abort(sock)
        assert wait_for(lambda: open_captures(pid, root) == 0), "the capture file stayed open"
        # The same worker goes on answering.
        assert requests.get(f"{node.url}/ping", timeout=10).status_code == 200
        assert worker_pid(node) == pid
        assert wait_for(lambda: "stopped (client went away)" in node.log())
        log = node.log()
    assert "Traceback" not in log


def test_a_stream_longer_than_the_worker_timeout_is_not_killed(big):
    root, capture = big
    env = env_for(root, root / "capture", root / "filed", PAR_WORKER_TIMEOUT="2")
    with gunicorn("node", env) as node:
        pid = worker_pid(node)
        sock, head = raw_get(node, "/data.pcap", capture.params, rcvbuf=64 * 1024)
        body = head.partition(b"\r\n\r\n")[2]
        digest, size = hashlib.sha256(body), len(body)
        started = time.monotonic()
        pace = capture.answer_bytes / 6.0  # bytes per second: about six seconds in all
        while True:
            data = sock.recv(256 * 1024)
            if not data:
                break
            digest.update(data)
            size += len(data)
            ahead = size / pace - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        sock.close()
        elapsed = time.monotonic() - started
        assert worker_pid(node) == pid
        log = node.log()
    assert elapsed > 4, "the stream did not outlast the worker timeout: the test proves nothing"
    assert size == capture.answer_bytes and digest.hexdigest() == capture.answer_sha256
    assert "WORKER TIMEOUT" not in log


# --- the OpenAPI document --------------------------------------------------------------------------


def _schemathesis(node, tmp_path, *options: str) -> set[str]:
    """Run schemathesis against the node's schema; the operations it tested, from its JUnit report."""
    if not SCHEMATHESIS.exists():
        pytest.skip("schemathesis is not installed in this environment")
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{node.url}/schema?format=json",
            "--checks",
            "not_a_server_error",
            "--seed",
            "20150226",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
            str(tmp_path / "junit.xml"),
            "--report-dir",
            str(tmp_path),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # The operations run, from the report (the console output names only those it warns about).
    cases = ElementTree.parse(tmp_path / "junit.xml").iter("testcase")
    assert " 500 " not in node.log()
    return {case.get("name") for case in cases if case.find("skipped") is None}


def test_schemathesis_finds_no_server_error(node, tmp_path):
    tested = _schemathesis(node, tmp_path, "--max-examples", "100", "--exclude-method", "POST")
    assert {"GET /data.pcap", "GET /flows"} <= tested, tested


def test_schemathesis_finds_no_server_error_in_posted_records(node, tmp_path):
    """Any JSON body (and anything else) POSTed as a record is a 4xx or an answer, never a 500."""
    tested = _schemathesis(node, tmp_path, "--max-examples", "30", "--include-method", "POST")
    assert tested == {"POST /data.pcap", "POST /flows"}, tested


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed: no outside reader")
def test_tcpdump_reads_the_answer(node, tmp_path):
    answer = requests.get(f"{node.url}/data.pcap", window(T0, T0 + 60), timeout=10)
    (tmp_path / "answer.pcap").write_bytes(answer.content)
    read = subprocess.run(
        ["tcpdump", "-nn", "-r", str(tmp_path / "answer.pcap")], capture_output=True, text=True, timeout=30
    )
    assert read.returncode == 0, read.stderr
    lines = read.stdout.splitlines()
    assert lines and all("10.0.0.1.40000" in line and "10.0.0.2.80" in line for line in lines)


def test_a_capture_damaged_mid_answer_cuts_the_connection_instead_of_a_short_200(tmp_path):
    (tmp_path / "capture").mkdir()
    (tmp_path / "filed").mkdir()
    frame = ether(tcp(A, A_PORT, B, B_PORT, b"x" * 1000))
    good = b"".join(pcap_record(T0 * NS + i * 1000_000, frame) for i in range(2000))  # 2 MB of the flow
    impossible = struct.pack("<IIII", T0 + 10, 0, 0x7FFFFFFF, 0x7FFFFFFF)  # a record no capture can hold
    (tmp_path / "capture" / f"pcap.{T0}").write_bytes(pcap_header() + good + impossible + good)
    with gunicorn("node", env_for(tmp_path, tmp_path / "capture", tmp_path / "filed")) as node:
        answer = requests.get(f"{node.url}/data.pcap", window(T0, T0 + 60), stream=True, timeout=10)
        assert answer.status_code == 200  # the damage is met after the answer began
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for _chunk in answer.iter_content(1 << 16):
                pass
        answer.close()
        assert requests.get(f"{node.url}/ping", timeout=10).status_code == 200
        assert wait_for(lambda: "failed after" in node.log() and "the answer is cut short" in node.log())
