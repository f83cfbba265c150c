"""An archive behind TLS signed by a private CA (an on-site S3): queries verify it with AWS_CA_BUNDLE, as boto3 does.

A real nginx terminates TLS in front of the real SeaweedFS server; the certificate is made for the test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.test import Client

from engine.formats import archived
from node import tiers
from tests.deploy.nginxrun import certificate, nginx_serving
from tests.deploy.test_nginx import NGINX
from tests.node.captures import T0, make_tree, window
from tests.node.test_tiers import archive, body, node_client  # noqa: F401  (archive: a fixture)
from tests.s3 import S3Server
from tests.servers import free_port


def _tls_proxy(where: Path, upstream: str, cert: Path, key: Path, port: int):
    """nginx terminating TLS on ``port`` with ``cert`` in front of ``upstream``."""
    site = (
        f"server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n"
        f"    ssl_certificate_key {key};\n    location / {{\n      proxy_pass {upstream};\n"
        "      proxy_set_header Host $http_host;\n      proxy_http_version 1.1;\n    }\n  }"
    )
    return nginx_serving(where, site, f"https://127.0.0.1:{port}/", cert)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for the test certificate")
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
    port = free_port()
    with _tls_proxy(tmp_path / "tls", weed_s3.endpoint, cert, key, port):
        try:
            monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
            archived.configure(f"https://127.0.0.1:{port}")
            with node_client(tree):
                response = Client().get("/data.pcap", window(T0, T0 + 200))
                assert response.status_code == 200, response.content
                assert body(response) == body(before)
            # without the bundle the private CA is not trusted: a 503 naming the archive, never bytes
            monkeypatch.delenv("AWS_CA_BUNDLE")
            archived.configure(f"https://127.0.0.1:{port}")
            from engine.formats.seekable import forget_shared_frames

            forget_shared_frames()
            with node_client(tree):
                refused = Client().get("/data.pcap", window(T0, T0 + 200))
                assert refused.status_code == 503 and f"s3://{bucket}/" in refused.json()["error"]
        finally:
            archived.configure(options.endpoint)
