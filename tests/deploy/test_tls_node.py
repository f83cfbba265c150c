"""TLS between collector and node, as docs/operator.md deploys it: the shipped nginx sample in front of a
node on loopback, the node as scheme https at the collector, its certificate checked.

Real processes: nginx (the oracle for the sample), the node and the collector under gunicorn.
"""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from pcapgen import ether, pcap_bytes, tcp, write_pcap
from tests.collector.live import live_database, manage
from tests.deploy.nginxrun import certificate, shipped_nginx
from tests.deploy.test_nginx import NGINX
from tests.servers import free_port, gunicorn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for the test certificate"),
]

T0 = 1_700_000_000
ADMIN = "54b22f56-9a84-4893-bc70-332e3b5ded66"
SECRET = "a-node-secret-that-tls-keeps-private"
QUERY = {"src_addr": "10.0.0.1", "src_port": "1234", "dst_addr": "10.0.0.2", "dst_port": "80"}
QUERY |= {"start_time": str(T0), "end_time": str(T0 + 60), "node_id": "1", "api_key": ADMIN}


def _records() -> list[tuple[int, bytes]]:
    return [
        ((T0 + 1) * 10**9 + i * 10**6, ether(tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"x" * i, seq=i)))
        for i in range(50)
    ]


def test_a_collector_fetches_from_a_node_behind_tls_and_checks_its_certificate(tmp_path):
    cert, key = certificate(tmp_path)
    node_dir = tmp_path / "node"
    (node_dir / "capture").mkdir(parents=True)
    (node_dir / "filed").mkdir()
    write_pcap(node_dir / "capture" / f"pcap.{T0}", _records())
    node_env = {
        "PAR_DATA_DIR": str(node_dir),
        "PAR_CAPTURE_DIR": str(node_dir / "capture"),
        "PAR_FILER_DIR": str(node_dir / "filed"),
        # As deploy/node.env.example has it: behind its nginx, which forwards for the collector.
        "PAR_TRUSTED_PROXIES": "127.0.0.1/32",
        "PAR_NODE_ALLOW": "127.0.0.1/32",
        "PAR_NODE_SECRET": SECRET,
    }
    tls_port = free_port()
    with gunicorn("node", node_env) as node:
        node_port = int(node.url.rsplit(":", 1)[1])
        sample = {"listen": {"9443": tls_port}, "upstream": node_port, "tls": "9443"}
        with shipped_nginx("nginx-par-node.conf", tmp_path, cert, key, **sample):
            collector_dir = tmp_path / "collector"
            collector_dir.mkdir()
            (collector_dir / "nodes.conf").write_text(json.dumps({"1": f"127.0.0.1:{tls_port}"}))
            (collector_dir / "api.conf").write_text(json.dumps({ADMIN: ["0"]}))
            with live_database(collector_dir) as db:
                env = {"DATABASE_URL": db, "PAR_DATA_DIR": str(collector_dir), "PAR_NODE_SECRET": SECRET}
                env |= {"PAR_KEY_PEPPER": "tls-test", "PAR_NODE_CONNECT_TIMEOUT": "5"}
                manage(
                    env,
                    "importconfig",
                    "--api-file",
                    str(collector_dir / "api.conf"),
                    "--node-file",
                    str(collector_dir / "nodes.conf"),
                )
                manage(
                    env,
                    "shell",
                    "-c",
                    "from collector.models import Node; Node.objects.filter(id=1).update(scheme='https')",
                )
                with gunicorn("collector", {**env, "REQUESTS_CA_BUNDLE": str(cert)}) as collector:
                    through = requests.get(f"{collector.url}/data.pcap", params=QUERY, timeout=60)
                with gunicorn("collector", {**env, "REQUESTS_CA_BUNDLE": ""}) as untrusting:
                    refused = requests.get(f"{untrusting.url}/data.pcap", params=QUERY, timeout=60)
            access = (tmp_path / "par-node.access.log").read_text()
    assert through.status_code == 200, through.text
    assert through.content[24:] == pcap_bytes(_records())[24:]
    # A certificate the collector cannot check is no node: the system's CAs do not know this one.
    assert refused.status_code == 502
    assert '"GET /data.pcap"' in access and "api_key" not in access and SECRET not in access
