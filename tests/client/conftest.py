"""A real node and collector under gunicorn, a key for the client, and the client run as a command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pcapgen import ether, pcap_bytes, tcp, udp, write_pcap
from tests.collector.live import live_database, manage
from tests.servers import ROOT, Server, free_port, gunicorn

CLIENT_DIR = ROOT / "client"
sys.path.insert(0, str(CLIENT_DIR))  # the in-process tests import par_client as an installed package would

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
PEPPER = "client-test-pepper"
FLOW = {"src_addr": "10.0.0.1", "src_port": "1234", "dst_addr": "10.0.0.2", "dst_port": "80"}
WINDOW = {"start_time": str(T0), "end_time": str(T0 + 60)}


def flow_records() -> list[tuple[int, bytes]]:
    """Both directions of one TCP flow, and look-alikes on another port and host that must not match."""
    records = []
    for i in range(300):
        ts = (T0 + 1) * 10**9 + i * 5_000_000
        if i % 3:
            packet = tcp("10.0.0.1", 1234, "10.0.0.2", 80, bytes([i % 256]) * (i % 900), seq=i)
        else:
            packet = tcp("10.0.0.2", 80, "10.0.0.1", 1234, b"ok", seq=i)
        records.append((ts, ether(packet)))
        records.append((ts + 1000, ether(tcp("10.0.0.1", 1235, "10.0.0.2", 80, b"other port"))))
        records.append((ts + 2000, ether(udp("10.0.0.3", 5353, "10.0.0.2", 53, b"other host"))))
    return records


def expected_pcap() -> bytes:
    """The flow's packets as the API answers them: a classic pcap, every record as captured."""
    return pcap_bytes([(ts, frame) for ts, frame in flow_records() if b"other" not in frame])


@dataclass
class Live:
    node: Server
    collector: Server
    key: str  # granted nodes 1 (the real node) and 2 (nobody listening)
    other_key: str  # granted node 1 only
    database_url: str


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("client-live")
    capture, filed = base / "node" / "capture", base / "node" / "filed"
    capture.mkdir(parents=True)
    filed.mkdir(parents=True)
    write_pcap(capture / f"pcap.{T0}", flow_records())
    node_env = {
        "PAR_DATA_DIR": str(base / "node"),
        "PAR_CAPTURE_DIR": str(capture),
        "PAR_FILER_DIR": str(filed),
        "DATABASE_URL": f"sqlite:///{base / 'node' / 'db.sqlite3'}",
    }
    with gunicorn("node", node_env) as node:
        nodes = {
            "1": node.url.removeprefix("http://"),
            "2": f"127.0.0.1:{free_port()}",
            "3": "192.0.2.1:9002",
        }
        (base / "nodes.conf").write_text(json.dumps(nodes))
        with live_database(base) as url:
            env = {"DATABASE_URL": url, "PAR_DATA_DIR": str(base), "PAR_KEY_PEPPER": PEPPER}
            env |= {"PAR_NODE_CONNECT_TIMEOUT": "2", "PAR_NODE_READ_TIMEOUT": "5"}
            manage(env, "importconfig", "--node-file", str(base / "nodes.conf"))
            key = manage(env, "createapikey", "--name", "analyst", "--nodes", "1,2").strip()
            other = manage(env, "createapikey", "--name", "one node", "--nodes", "1").strip()
            with gunicorn("collector", env) as collector:
                yield Live(node, collector, key, other, url)


def par(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run the client as a command (``python -m par_client``), in an environment with no config file."""
    home = cwd or Path(os.environ.get("TMPDIR", "/tmp"))
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config-none"),
        "PYTHONPATH": str(CLIENT_DIR),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "par_client", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        timeout=timeout,
    )


@pytest.fixture
def as_analyst(live) -> dict[str, str]:
    return {"PAR_URL": live.collector.url, "PAR_API_KEY": live.key}
