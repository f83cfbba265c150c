"""`make demo`: the newcomer's first minute works, and stopping it stops everything."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from demo.__main__ import demo_ports
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


@pytest.mark.slow
def test_the_demo_serves_a_flow_and_prints_a_curl_that_works(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PAR_", "DJANGO_")) and k != "DATABASE_URL"
    }
    env["PAR_DEMO_DIR"] = str(tmp_path / "demo")
    collector_port, node_port = free_port(), free_port()
    env["DEMO_PORTS"] = f"{collector_port},{node_port}"
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "the demo stopped early:\n" + "".join(lines)
            lines.append(line)
            if "Serving until Ctrl-C" in line:
                break
        output = "".join(lines)
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
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    assert demo.returncode == 0
    time.sleep(0.5)
    assert not _processes_using(str(tmp_path / "demo")), "the demo left servers running"


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
