"""`make demo`: the newcomer's first minute works, and stopping it stops everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.servers import ROOT


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
        answer = requests.get(
            curl.group(2), headers={"Authorization": f"Api-Key {curl.group(1)}"}, timeout=60
        )
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
        assert answer.content == (tmp_path / "demo" / "flow.pcap").read_bytes()
        servers = [pid for pid in _processes_using(str(tmp_path / "demo")) if pid != demo.pid]
        assert len(servers) >= 4, "a node and a collector, each a gunicorn master and worker"
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    assert demo.returncode == 0
    time.sleep(0.5)
    assert not _processes_using(str(tmp_path / "demo")), "the demo left servers running"
