"""An archive behind TLS signed by a private CA (an on-site S3): queries verify it with AWS_CA_BUNDLE, as boto3 does.

A real nginx terminates TLS in front of the real SeaweedFS server; the certificate is made for the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from django.test import Client

from engine.formats import archived
from node import tiers
from tests.deploy.nginxrun import certificate
from tests.deploy.test_nginx import NGINX
from tests.node.captures import T0, make_tree, window
from tests.node.test_tiers import archive, body, node_client  # noqa: F401  (archive: a fixture)
from tests.s3 import S3Server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tls_proxy(where: Path, upstream: str, cert: Path, key: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    (where / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {where}/nginx.pid;\nerror_log {where}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log {where}/access.log;\n  client_body_temp_path {where}/body;\n"
        f"  proxy_temp_path {where}/proxy;\n"
        f"  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n"
        f"    ssl_certificate_key {key};\n    location / {{\n      proxy_pass {upstream};\n"
        "      proxy_set_header Host $http_host;\n      proxy_http_version 1.1;\n    }\n  }\n}\n"
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
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            requests.get(f"https://127.0.0.1:{port}/", verify=str(cert), timeout=2)
            return process, port
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                process.terminate()
                raise RuntimeError("nginx did not answer") from None
            time.sleep(0.1)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_a_query_verifies_a_private_ca_archive_with_aws_ca_bundle(
    tmp_path,
    archive,  # noqa: F811  (the fixture)
    weed_s3: S3Server,
    monkeypatch,
):
    bucket, options = archive
    tree = make_tree(tmp_path / "tree", files=3, packets=500)
    expected = Client()
    with node_client(tree):
        before = expected.get("/data.pcap", window(T0, T0 + 200))
    assert before.status_code == 200
    tiers.archive_tree(tree.filer_dir, "pcap", options)

    (tmp_path / "tls").mkdir()
    cert, key = certificate(tmp_path / "tls")
    proxy, port = _tls_proxy(tmp_path / "tls", weed_s3.endpoint, cert, key)
    try:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
        archived.configure(f"https://127.0.0.1:{port}")
        archived.forget_clients()
        with node_client(tree):
            response = Client().get("/data.pcap", window(T0, T0 + 200))
            assert response.status_code == 200, response.content
            assert body(response) == body(before)
        # without the bundle the private CA is not trusted: a 503 naming the archive, never bytes
        monkeypatch.delenv("AWS_CA_BUNDLE")
        archived.forget_clients()
        from engine.formats.seekable import forget_shared_frames

        forget_shared_frames()
        with node_client(tree):
            refused = Client().get("/data.pcap", window(T0, T0 + 200))
            assert refused.status_code == 503 and f"s3://{bucket}/" in refused.json()["error"]
    finally:
        proxy.terminate()
        proxy.wait(timeout=20)
        archived.configure(options.endpoint)
        archived.forget_clients()
