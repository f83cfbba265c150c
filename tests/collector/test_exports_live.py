"""Exports end to end: gunicorn collector, real nodes, and the real worker (``manage.py runexports``)
on each task backend: the collector's database, and RQ on a Redis server of the test's own."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pcapgen import ether, pcap_bytes, tcp, write_pcap
from tests.collector.pcapnode import PcapNode
from tests.collector.test_live import FLOW, T0, WINDOW, flow_records, live_collector, node_env
from tests.servers import ROOT, Server, free_port, gunicorn

ADMIN = "54b22f56-9a84-4893-bc70-332e3b5ded66"
ANALYST = "d5c3d52e-d42c-41ff-bbfa-d3e802770ee1"  # nodes 1 and 2
SLOW = [
    (T0 * 10**9 + i * 10**6, ether(tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"s%d" % i * 60)))
    for i in range(600)
]
SLOW_BODY = pcap_bytes(SLOW)


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server of this test's own on a free loopback port; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module", params=["database", "redis"])
def backend(request, tmp_path_factory) -> Iterator[dict[str, str]]:
    if request.param == "database":
        yield {}
        return
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield {"PAR_TASKS_URL": url}


@pytest.fixture(scope="module")
def real_node(tmp_path_factory) -> Iterator[Server]:
    env = node_env(tmp_path_factory.mktemp("node"), "n1")
    write_pcap(Path(env["PAR_CAPTURE_DIR"]) / f"pcap.{T0}", flow_records())
    with gunicorn("node", env) as node:
        yield node


@pytest.fixture(scope="module")
def slow_node() -> Iterator[PcapNode]:
    node = PcapNode(SLOW_BODY, delay=0.03)
    yield node
    node.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, backend, real_node, slow_node) -> Iterator[tuple[Server, dict]]:
    nodes = {"1": real_node.url.removeprefix("http://"), "2": slow_node.address}
    base = tmp_path_factory.mktemp("collector")
    extra = {"PAR_EXPORT_LEASE": "3", "PAR_KEY_EXPORTS": "5", **backend}
    with live_collector(base, nodes, {ADMIN: ["0"], ANALYST: ["1", "2"]}, **extra) as (server, _, env):
        yield server, env


@contextmanager
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``manage.py runexports`` with the collector's settings; killed at the end if still running."""
    log = open(Path(env["PAR_DATA_DIR"]) / "runexports.log", "ab")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runexports"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "parsite.settings", "PAR_ROLE": "collector", **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def call(live, method: str, path: str, key: str = ANALYST, **kwargs) -> requests.Response:
    server, _ = live
    headers = {"Authorization": f"Api-Key {key}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kwargs)


def wait_for(live, job_id: int, condition, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = call(live, "GET", f"/exports/{job_id}").json()
        if condition(job):
            return job
        assert time.monotonic() < deadline, f"export {job_id} stayed {job}"
        time.sleep(0.1)


def start(live, **params) -> dict:
    answer = call(live, "POST", "/exports", params=params)
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_a_job_s_file_is_what_the_streamed_get_answers_byte_for_byte(live):
    _, env = live
    job = start(live, node_id="1", **FLOW, **WINDOW)
    with worker(env):
        done = wait_for(live, job["id"], lambda j: j["state"] == "done")
    streamed = call(live, "GET", "/data.pcap", params={"node_id": "1", **FLOW, **WINDOW})
    assert streamed.status_code == 200
    data = call(live, "GET", done["download"])
    assert data.status_code == 200 and data.content == streamed.content
    assert done["sha256"] == hashlib.sha256(streamed.content).hexdigest() == data.headers["ETag"].strip('"')
    assert done["bytes"] == len(streamed.content) and done["packets"] > 0
    resumed = call(live, "GET", done["download"], headers={"Range": "bytes=100-"})
    assert resumed.status_code == 206 and resumed.content == streamed.content[100:]
    assert call(live, "GET", done["download"], key=ADMIN).status_code == 200


def test_two_nodes_are_merged_by_time_into_one_file(live):
    _, env = live
    job = start(live, node_id="1,2", **FLOW, **{**WINDOW, "end_time": str(T0 + 61)})
    with worker(env):
        done = wait_for(live, job["id"], lambda j: j["state"] == "done")
    streamed = call(
        live, "GET", "/data.pcap", params={"node_id": "1,2", **FLOW, **WINDOW, "end_time": str(T0 + 61)}
    )
    assert call(live, "GET", done["download"]).content == streamed.content
    assert done["nodes"] == {"1": "done", "2": "done"}


def test_a_worker_killed_mid_job_leaves_it_retried_and_the_file_exact(live, slow_node):
    _, env = live
    job = start(live, node_id="2", src_addr="10.0.0.1", start_time=str(T0), end_time=str(T0 + 10))
    for attempt in (1, 2):
        with worker(env) as process:
            wait_for(
                live,
                job["id"],
                lambda j, n=attempt: (j["state"], j["attempts"]) == ("running", n) and j["bytes"] > 0,
            )
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert call(live, "GET", f"/exports/{job['id']}").json()["state"] != "done"
    with worker(env):
        done = wait_for(live, job["id"], lambda j: j["state"] in ("done", "failed"))
    assert done["state"] == "done", done
    assert done["attempts"] == 3
    assert call(live, "GET", done["download"]).content == SLOW_BODY
    assert done["sha256"] == hashlib.sha256(SLOW_BODY).hexdigest()
    files = os.listdir(Path(env["PAR_DATA_DIR"]) / "exports")
    assert [name for name in files if name.endswith(".tmp")] == []


def test_a_running_job_cancelled_stops_within_seconds_and_leaves_no_file(live, slow_node):
    _, env = live
    exports = Path(env["PAR_DATA_DIR"]) / "exports"
    slow_node.paused.set()
    try:
        job = start(live, node_id="2", src_addr="10.0.0.1", start_time=str(T0), end_time=str(T0 + 11))
        with worker(env):
            wait_for(live, job["id"], lambda j: j["state"] == "running" and j["bytes"] > 0)
            assert any(name.startswith(f".export-{job['id']}.") for name in os.listdir(exports))
            assert call(live, "DELETE", f"/exports/{job['id']}").status_code == 204
            deadline = time.monotonic() + 5
            while any(name.startswith(f".export-{job['id']}.") for name in os.listdir(exports)):
                assert time.monotonic() < deadline, "the cancelled job's file is still there after 5 s"
                time.sleep(0.05)
            # the worker is free again: the next job runs
            slow_node.paused.clear()
            other = start(live, node_id="1", **FLOW, **{**WINDOW, "end_time": str(T0 + 62)})
            wait_for(live, other["id"], lambda j: j["state"] == "done")
    finally:
        slow_node.paused.clear()
    cancelled = call(live, "GET", f"/exports/{job['id']}").json()
    assert cancelled["state"] == "cancelled" and cancelled["download"] is None
    assert call(live, "GET", f"/exports/{job['id']}/data.pcap").status_code == 409


def test_par_export_starts_follows_downloads_and_resumes_an_interrupted_download(live, tmp_path):
    from tests.client.conftest import par

    server, env = live
    query = {"node_id": "1", **FLOW, **{**WINDOW, "end_time": str(T0 + 63)}}
    expected = call(live, "GET", "/data.pcap", params=query).content
    terms = [f"{name}={value}" for name, value in query.items()]
    client_env = {"PAR_URL": server.url, "PAR_API_KEY": ANALYST}
    with worker(env):
        first = par("export", *terms, "-o", str(tmp_path / "out.pcap"), env=client_env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert (tmp_path / "out.pcap").read_bytes() == expected
        # The same query again finds the same job; a download cut at 100 bytes is resumed from there.
        job_id = int(first.stderr.decode().split("export ", 1)[1].split(":", 1)[0])
        (tmp_path / f".again.pcap.export-{job_id}.part").write_bytes(expected[:100])
        again = par("export", *terms, "-o", str(tmp_path / "again.pcap"), env=client_env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert b"resuming the download at 100 B" in again.stderr
        assert (tmp_path / "again.pcap").read_bytes() == expected
        listed = par("exports", env=client_env, cwd=tmp_path)
        assert listed.returncode == 0
        assert re.search(rf"^{job_id}\s+done\s+100%\s+{len(expected)}\s", listed.stdout.decode(), re.M)
