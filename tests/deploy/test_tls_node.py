"""TLS between collector and node, as docs/operator.md deploys it: the shipped nginx sample in front of a
node on loopback, the node as scheme https at the collector, its certificate checked.

Real processes: nginx (the oracle for the sample), the node and the collector under gunicorn.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from pcapgen import ether, pcap_bytes, tcp, write_pcap
from tests.collector.live import live_database, manage
from tests.deploy.test_nginx import NGINX
from tests.servers import ROOT, free_port, gunicorn

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


def _certificate(where: Path) -> tuple[Path, Path]:
    cert, key = where / "node.pem", where / "node.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def _start_nginx(where: Path, cert: Path, key: Path, listen: int, node_port: int) -> subprocess.Popen:
    text = (ROOT / "deploy" / "nginx-par-node.conf").read_text()
    text = text.replace("listen 9443 ssl;", f"listen 127.0.0.1:{listen} ssl;").replace(
        "listen [::]:9443 ssl;", ""
    )
    text = text.replace("server 127.0.0.1:9002;", f"server 127.0.0.1:{node_port};")
    text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", text)
    text = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", text)
    text = text.replace("/var/log/nginx/", f"{where}/")
    (where / "node-site.conf").write_text(text)
    user = "user root;\n" if os.geteuid() == 0 else ""  # the workers read what the test wrote
    (where / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {where}/nginx.pid;\nerror_log {where}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log {where}/access.log;\n  client_body_temp_path {where}/body;\n"
        f"  proxy_temp_path {where}/proxy;\n  include {where}/node-site.conf;\n}}\n"
    )
    process = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(where),
            "-e",
            str(where / "error.log"),
            "-c",
            str(where / "nginx.conf"),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")
        try:
            requests.get(f"https://127.0.0.1:{listen}/ping", verify=str(cert), timeout=2)
            return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("nginx did not answer")


def test_a_collector_fetches_from_a_node_behind_tls_and_checks_its_certificate(tmp_path):
    cert, key = _certificate(tmp_path)
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
        nginx = _start_nginx(tmp_path, cert, key, tls_port, int(node.url.rsplit(":", 1)[1]))
        try:
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
        finally:
            nginx.terminate()
            nginx.wait(timeout=20)
    assert through.status_code == 200, through.text
    assert through.content[24:] == pcap_bytes(_records())[24:]
    # A certificate the collector cannot check is no node: the system's CAs do not know this one.
    assert refused.status_code == 502
    assert '"GET /data.pcap"' in access and "api_key" not in access and SECRET not in access
