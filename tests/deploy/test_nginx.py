"""The shipped nginx samples load: ``nginx -t`` on each, with a throwaway self-signed certificate.

nginx is the oracle (Debian 12 ships 1.22): a directive it does not know, or one in the wrong
context, fails the test. The samples are included at http level, as Debian's sites-enabled/ are.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import ROOT

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
SAMPLES = sorted((ROOT / "deploy").glob("nginx-*.conf"))

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for the test certificate"),
]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made for this run only."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=par.test"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def nginx_test(sample: Path, certificate: tuple[Path, Path], where: Path) -> subprocess.CompletedProcess:
    """``nginx -t`` on ``sample`` included in a minimal nginx.conf; certificates and logs under ``where``."""
    cert, key = certificate
    text = sample.read_text()
    text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", text)
    text = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", text)
    text = text.replace("/var/log/nginx/", f"{where}/")
    (where / sample.name).write_text(text)
    (where / "nginx.conf").write_text(
        f"pid {where}/nginx.pid;\nerror_log {where}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log {where}/access.log;\n  include {where / sample.name};\n}}\n"
    )
    return subprocess.run(
        [NGINX, "-t", "-p", str(where), "-e", str(where / "error.log"), "-c", str(where / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_samples_are_the_collectors_and_the_nodes():
    assert {p.name for p in SAMPLES} >= {"nginx-par.conf", "nginx-par-node.conf"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_nginx_accepts_the_shipped_sample(sample, certificate, tmp_path):
    result = nginx_test(sample, certificate, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_refuses_a_directive_of_a_newer_nginx(certificate, tmp_path):
    """The check can fail: ``http2 on;`` (nginx >= 1.25.1) is what the collector's sample had."""
    broken = tmp_path / "nginx-broken.conf"
    broken.write_text(
        (ROOT / "deploy" / "nginx-par.conf").read_text().replace("ssl http2;", "ssl;\n    http2 on;", 1)
    )
    work = tmp_path / "work"
    work.mkdir()
    result = nginx_test(broken, certificate, work)
    version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr
    if tuple(int(n) for n in re.search(r"(\d+)\.(\d+)\.(\d+)", version).groups()) >= (1, 25, 1):
        pytest.skip(f"this nginx knows http2 on; ({version.strip()})")
    assert result.returncode != 0
    assert "http2" in result.stderr


def test_the_collector_sample_keeps_query_strings_out_of_its_log_and_streams():
    text = (ROOT / "deploy" / "nginx-par.conf").read_text()
    log_format = re.search(r"^log_format .*$", text, re.M).group(0)
    assert "$uri" in log_format and not re.search(r"\$(request|args|query_string)\b", log_format)
    assert "proxy_buffering off;" in text
    assert "location /static/" in text
