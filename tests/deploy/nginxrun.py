"""The shipped nginx samples run for real: a throwaway certificate, ports and paths of the test."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.deploy.test_nginx import NGINX
from tests.servers import ROOT


def certificate(where: Path, name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (an address) and its key, made for this run only."""
    cert, key = where / "site.pem", where / "site.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName=IP:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def shipped_nginx(
    sample: str, where: Path, cert: Path, key: Path, *, listen: dict[str, int], upstream: int, tls: str
) -> Iterator[subprocess.Popen]:
    """nginx running ``deploy/<sample>`` as shipped but for its ports (``listen``: shipped -> test's),
    its upstream's port, its certificate and its log directory; ready once port ``tls`` answers."""
    text = (ROOT / "deploy" / sample).read_text()
    text = re.sub(r"^\s*listen \[::\]:\S+.*$", "", text, flags=re.M)
    for shipped, port in listen.items():
        text = re.sub(rf"listen {shipped}\b", f"listen 127.0.0.1:{port}", text)
    text = re.sub(r"server 127\.0\.0\.1:\d+;", f"server 127.0.0.1:{upstream};", text)
    text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", text)
    text = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", text)
    text = text.replace("/var/log/nginx/", f"{where}/")
    (where / "site.conf").write_text(text)
    with nginx_serving(
        where, f"include {where}/site.conf;", f"https://127.0.0.1:{listen[tls]}/", cert
    ) as process:
        yield process


@contextmanager
def nginx_serving(where: Path, site: str, ready: str, cert: Path) -> Iterator[subprocess.Popen]:
    """nginx in ``where`` with ``site`` (server blocks, or an include of them) as its http
    configuration; yielded once ``ready`` (an https URL checked against ``cert``) answers, stopped on
    leaving."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # the workers read what the test wrote
    (where / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {where}/nginx.pid;\nerror_log {where}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log {where}/access.log;\n  client_body_temp_path {where}/body;\n"
        f"  proxy_temp_path {where}/proxy;\n  {site}\n}}\n"
    )
    argv = [NGINX, "-p", str(where), "-e", str(where / "error.log"), "-c", str(where / "nginx.conf")]
    process = subprocess.Popen(
        [*argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                requests.get(ready, verify=str(cert), timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not answer") from None
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)
