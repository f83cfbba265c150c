"""The whole chain as an operator runs it, with the real capture tools.

capture tool (daemonlogger or tcpdump -G) on a veth link between two network
namespaces -> runfiler -> node (gunicorn) -> collector (gunicorn) -> analyst.
Known flows are sent across the link while tcpdump records the other end of
the link as the reference; every flow fetched through the collector must hold
exactly the reference's frames of that flow, both directions, in order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.netns import veth_pair, why_not_available
from tests.e2e.traffic import FLOWS, NOISE, SERVER, client_code
from tests.servers import ROOT, gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.tools]

ADMIN_KEY = "54b22f56-9a84-4893-bc70-332e3b5ded66"  # a seed-style UUID key, imported as it is


def read_frames(data: bytes) -> list[bytes]:
    """Frames of a classic little-endian pcap (as daemonlogger, tcpdump and our answers write it)."""
    magic = struct.unpack_from("<I", data)[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), hex(magic)
    frames, offset = [], 24
    while offset + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        frames.append(data[offset + 16 : offset + 16 + caplen])
        offset += 16 + caplen
    assert offset == len(data), "trailing bytes"
    return frames


def reference_frames(reference: Path, flow) -> list[bytes]:
    expr = f"host {flow.src} and host {flow.dst} and port {flow.sport} and port {flow.dport} and {flow.proto}"
    out = subprocess.run(["tcpdump", "-r", str(reference), "-w", "-", expr], capture_output=True, check=True)
    return read_frames(out.stdout)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def capture_command(tool: str, dev: str, capture_dir: Path) -> list[str]:
    if tool == "daemonlogger":
        return ["daemonlogger", "-i", dev, "-l", str(capture_dir), "-n", "pcap", "-t", "2", "-F"]
    return ["tcpdump", "-i", dev, "-n", "-U", "-Z", "root", "-G", "2", "-w", str(capture_dir / "pcap.%s")]


@pytest.fixture(scope="module")
def netns_ok():
    reason = why_not_available()
    if reason:
        pytest.skip(reason)
    for tool in ("daemonlogger", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package {tool})")


@pytest.mark.parametrize("tool", ["daemonlogger", "tcpdump"])
def test_flows_captured_on_a_link_come_back_exactly_through_the_collector(tool, tmp_path, netns_ok):
    capture_dir, filer_dir = tmp_path / "capture", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    reference = tmp_path / "reference.pcap"
    started = time.time()

    with veth_pair() as link:
        server = link.popen(link.ns_b, [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
        capture = link.popen(
            link.ns_b,
            capture_command(tool, link.dev_b, capture_dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        recorder = link.popen(
            link.ns_a,
            ["tcpdump", "-i", link.dev_a, "-n", "-U", "-Z", "root", "-w", str(reference)],
            stderr=subprocess.DEVNULL,
        )
        try:
            assert server.stdout.readline().strip() == "ready"
            time.sleep(1.5)  # both captures are up
            link.python(link.ns_a, client_code((*FLOWS, NOISE)), capture_output=True, text=True, timeout=120)
            time.sleep(2.5)  # one more rotation, so most data is in finished files
        finally:
            for process in (capture, recorder, server):
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()

    node_env = {
        "PAR_ROLE": "node",
        "PAR_DATA_DIR": str(tmp_path / "node"),
        "PAR_CAPTURE_DIR": str(capture_dir),
        "PAR_FILER_DIR": str(filer_dir),
    }
    out = manage(node_env, "runfiler")
    assert "Processing: pcap." in out
    assert list(filer_dir.rglob("pcap.*")), "nothing was filed"

    db = f"sqlite:///{tmp_path / 'collector.sqlite3'}"
    collector_env = {"PAR_ROLE": "collector", "PAR_DATA_DIR": str(tmp_path / "collector"), "DATABASE_URL": db}
    manage(collector_env, "migrate", "--noinput")
    with gunicorn("node", node_env) as node:
        api_conf, nodes_conf = tmp_path / "api.conf", tmp_path / "nodes.conf"
        api_conf.write_text(json.dumps({ADMIN_KEY: ["0"]}))
        nodes_conf.write_text(json.dumps({"1": node.url.removeprefix("http://")}))
        manage(collector_env, "importconfig", "--api-file", str(api_conf), "--node-file", str(nodes_conf))
        with gunicorn("collector", collector_env) as collector:
            for flow in FLOWS:
                answer = requests.get(
                    f"{collector.url}/data.pcap",
                    params={
                        "src_addr": flow.src,
                        "src_port": flow.sport,
                        "dst_addr": flow.dst,
                        "dst_port": flow.dport,
                        "start_time": f"{started - 5:.6f}",
                        "end_time": f"{time.time() + 5:.6f}",
                        "node_id": 1,
                    },
                    headers={"Authorization": f"Api-Key {ADMIN_KEY}"},
                    timeout=60,
                )
                assert answer.status_code == 200, answer.text
                assert answer.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
                got = read_frames(answer.content)
                expected = reference_frames(reference, flow)
                assert len(expected) >= 2 * len(flow.payloads), "the reference missed packets"
                assert got == expected, f"{flow.proto} {flow.src}:{flow.sport} differs from the wire"
                for payload in flow.payloads:
                    assert any(payload in frame for frame in got)
                assert not any(b"noise-" in frame for frame in got)
