"""`make demo`: the newcomer's first minute works, and stopping it stops everything."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from demo.__main__ import _port, demo_ports
from node.jobs import die_with_parent
from tests.servers import ROOT, free_port


def _processes_using(directory: str) -> list[int]:
    """Processes whose environment points into ``directory`` (the demo's servers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if directory.encode() in fh.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def _wait_until_gone(directory: str, timeout: float = 40) -> list[int]:
    """Wait until no process uses ``directory``; the ones still left at the timeout."""
    deadline = time.monotonic() + timeout
    while (left := _processes_using(directory)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@contextmanager
def running_demo(
    demo_dir: Path, ports: tuple[int, int], timeout: float = 180, **extra: str
) -> Iterator[tuple[subprocess.Popen, str]]:
    """The demo, started and serving on ``ports`` (collector, node), with its output so far.

    Whatever happens in the block or
    while it starts (a timeout included), nothing it started is left running afterwards: it is
    stopped with Ctrl-C, killed if it will not stop, and its servers with it; if the test run
    itself is killed, the demo gets SIGTERM from the kernel."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PAR_", "DJANGO_")) and k != "DATABASE_URL"
    }
    env["PAR_DEMO_DIR"] = str(demo_dir)
    env["DEMO_PORTS"] = "{},{}".format(*ports)
    env |= extra
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: die_with_parent(signal.SIGTERM),
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout], daemon=True).start()
    try:
        output = ""
        deadline = time.monotonic() + timeout
        while "Serving until Ctrl-C" not in output:
            assert demo.poll() is None or not lines.empty(), "the demo stopped early:\n" + output
            try:
                output += lines.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                assert time.monotonic() < deadline, "the demo did not start in time:\n" + output
        yield demo, output
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
        for pid in _wait_until_gone(str(demo_dir), timeout=30):
            os.kill(pid, signal.SIGKILL)  # not to leave them running should the test fail


@pytest.mark.slow
def test_the_demo_serves_a_flow_and_prints_a_curl_that_works(tmp_path):
    collector_port, node_port = free_port(), free_port()
    with running_demo(tmp_path / "demo", (collector_port, node_port)) as (demo, output):
        assert "Fetched " in output
        packets = int(re.search(r"(\d+) packets", output).group(1))
        assert packets > 0
        curl = re.search(r"curl -H 'Authorization: Api-Key (\S+)' -o flow.pcap '(\S+)'", output)
        assert curl, output
        assert curl.group(2).startswith(f"http://127.0.0.1:{collector_port}/data.pcap?")
        assert f"node on 127.0.0.1:{node_port}" in output
        answer = requests.get(
            curl.group(2), headers={"Authorization": f"Api-Key {curl.group(1)}"}, timeout=60
        )
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
        assert answer.content == (tmp_path / "demo" / "flow.pcap").read_bytes()
        if shutil.which("tshark"):  # the flow the analyst opens is a clean HTTP session
            expert = subprocess.run(
                ["tshark", "-r", str(tmp_path / "demo" / "flow.pcap"), "-q", "-z", "expert"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            assert "Errors (" not in expert and "Warnings (" not in expert, expert
            assert "retransmission" not in expert and "Duplicate ACK" not in expert, expert
            assert "HTTP/1.1 200 OK" in expert and "(SYN)" in expert and "(FIN)" in expert, expert
        servers = [pid for pid in _processes_using(str(tmp_path / "demo")) if pid != demo.pid]
        assert len(servers) >= 4, "a node and a collector, each a gunicorn master and worker"

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        assert _wait_until_gone(str(tmp_path / "demo")) == [], "the demo left servers running"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL], ids=["SIGHUP", "SIGKILL"])
def test_the_demo_stopped_by_a_closed_terminal_or_killed_stops_both_servers(tmp_path, signum):
    with running_demo(tmp_path / "demo", (free_port(), free_port())) as (demo, _):
        assert len(_processes_using(str(tmp_path / "demo"))) >= 5

        demo.send_signal(signum)
        demo.wait(timeout=60)
        assert _wait_until_gone(str(tmp_path / "demo")) == [], "the demo left servers running"


def test_the_port_probes_take_a_port_a_previous_demo_left_in_time_wait():
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its end of the connection waits in TIME_WAIT
        client.recv(1)
        client.close()
    assert _port(port) == port
    assert demo_ports(f"{port},{free_port()}")[0] == port  # and DEMO_PORTS takes it


@pytest.mark.parametrize("text", ["19001", "19001,19001", "19001,http", "0,19002", "19001,70000"])
def test_demo_ports_that_cannot_be_used_are_refused_with_a_message(text):
    with pytest.raises(SystemExit) as stopped:
        demo_ports(text)
    assert "DEMO_PORTS" in str(stopped.value)


def test_demo_ports_are_taken_as_given_collector_first():
    collector, node = free_port(), free_port()
    assert demo_ports(f"{collector}, {node}") == (collector, node)


def test_a_busy_demo_port_is_refused_by_number():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit, match=f"port {port} on 127.0.0.1 is not free"):
            demo_ports(f"{port},{free_port()}")


def _epoch_of(name: str) -> int:
    """The epoch of a filed capture's or index's name (``pcap.<epoch>[.zst|.idx]``); -1 for the hour's summary."""
    found = re.match(r"pcap\.([0-9]+)", name)
    return int(found.group(1)) if found else -1


def _demo_env(demo_dir: Path, ports: tuple[int, int]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PAR_", "DJANGO_")) and k != "DATABASE_URL"
    }
    return env | {"PAR_DEMO_DIR": str(demo_dir), "DEMO_PORTS": "{},{}".format(*ports)}


@pytest.mark.slow
def test_the_demo_captures_on_refuses_a_second_demo_and_says_where_its_password_is(tmp_path):
    demo_dir = tmp_path / "demo"
    started = int(time.time())
    # Live files of 10 s, a filer pass every 2 s: what a minute and half a minute are in `make demo`.
    with running_demo(
        demo_dir, (free_port(), free_port()), PAR_DEMO_LIVE_SECONDS="10", PAR_DEMO_FILER_EVERY="2"
    ) as (
        demo,
        output,
    ):
        for line in (
            "Page:     http://127.0.0.1:",
            "Admin:    http://127.0.0.1:",
            "API docs: http://127.0.0.1:",
        ):
            assert line in output
        credentials = json.loads((tmp_path / "demo-credentials.json").read_text())
        assert f"(admin / {credentials['password']})" in output
        assert f"kept in {tmp_path / 'demo-credentials.json'}" in output
        assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o077 == 0
        assert f"Api-Key {credentials['api_key']}'" in output

        second = subprocess.run(
            [sys.executable, "-m", "demo"], cwd=ROOT, env=_demo_env(demo_dir, (free_port(), free_port())),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode != 0
        assert f"another `make demo` is running (pid {demo.pid})" in second.stderr
        assert (demo_dir / "flow.pcap").exists(), "the first demo's files are where they were"

        # The live capture grows, and the filer's loop files each finished file in the node's tree.
        collector = re.search(r"Page:\s+(http://127.0.0.1:\d+)/ui/", output).group(1)
        deadline = time.monotonic() + 90
        while True:
            filed = [p for p in (demo_dir / "filed").rglob("pcap.*") if _epoch_of(p.name) >= started]
            if filed:
                break
            assert time.monotonic() < deadline, sorted(p.name for p in (demo_dir / "capture").iterdir())
            time.sleep(0.5)
        recent = requests.get(
            f"{collector}/flows", params={"start_time": "-2m", "node_id": "1"},
            headers={"Authorization": f"Api-Key {credentials['api_key']}"}, timeout=60,
        )  # fmt: skip
        assert recent.status_code == 200, recent.text
        assert any(
            row["first"] >= datetime.fromtimestamp(started, UTC).isoformat()[:19]
            for row in recent.json()["flows"]
        )


def test_the_demo_keeps_its_password_and_key_across_runs(tmp_path, monkeypatch):
    import demo.__main__ as demo_main

    monkeypatch.setattr(demo_main, "CREDENTIALS", tmp_path / "demo-credentials.json")
    password, key, kept = demo_main.demo_credentials()
    assert not kept and key.startswith("par_")
    assert demo_main.demo_credentials() == (password, key, True)
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o777 == 0o600
