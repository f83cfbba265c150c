"""par against a hostile or odd server: what it prints, reads and trusts (stand-in collectors)."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import CLIENT_DIR, expected_pcap, par
from tests.client.fake import FakeCollector

KEY = "par_" + "k" * 43
TITLE = "\x1b]0;owned\x07"  # retitles a terminal's window
CONTROLS = (b"\x1b", b"\x07", b"\r", b"\x9b", "\x9b".encode())
ROW = {
    "node": "1",
    "proto": 6,
    "src_addr": "10.0.0.1\x1b[2J",
    "src_port": 1234,
    "dst_addr": "10.0.0.2",
    "dst_port": 80,
    "community_id": "1:abc=\r",
    "first": "2023-11-14T22:13:21Z",
    "last": "2023-11-14T22:13:22Z",
    "packets": 3,
    "bytes": 180,
}
BOMB_SIZE = 200 << 20  # unpacked; about 200 KB packed


def gzip_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(BOMB_SIZE >> 20)) + packer.flush()


def answer(path: str, params: dict[str, str]):
    import json

    if path == "/ping":
        return 200, {"Content-Type": "application/json"}, [b'{"role": "collector", "version": "1"}']
    if path == "/flows":
        body = {"window": {}, "flows": [ROW], "truncated": False, "failed": {"4": f"gone{TITLE}"}}
        return 200, {"Content-Type": "application/json"}, [json.dumps(body).encode()]
    if path == "/data.pcap" and params.get("src_port") == "bomb":
        return 500, {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, [gzip_bomb()]
    if path == "/data.pcap" and params.get("src_port") == "error":
        body = json.dumps({"error": f"no such flow{TITLE}\rpar: all good \x9b2J"}).encode()
        return 400, {"Content-Type": "application/json"}, [body]
    headers = {"X-PAR-Nodes-Failed": f"4=down{TITLE}", "X-PAR-Damaged": "pcap.1\x1b[31m"}
    return 200, {"Content-Type": "application/vnd.tcpdump.pcap", **headers}, [expected_pcap()]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCollector]:
    server = FakeCollector(answer)
    yield server
    server.close()


@pytest.fixture
def env(fake) -> dict[str, str]:
    return {"PAR_URL": fake.url, "PAR_API_KEY": KEY}


def test_no_control_character_a_server_sends_reaches_the_terminal(env):
    table = par("flows", "start_time=-1h", env=env)
    error = par("pcap", "src_port=error", "start_time=-1h", "-o", "-", env=env)
    warned = par("pcap", "start_time=-1h", "-o", "-", env=env)
    assert table.returncode == warned.returncode == 0 and error.returncode == 1
    shown = table.stdout + table.stderr + error.stderr + warned.stderr
    assert not any(control in shown for control in CONTROLS), shown
    assert b"10.0.0.1?[2J:1234" in table.stdout and b"node 4 left out: gone?]0;owned?" in table.stderr
    assert b"par: no such flow?]0;owned??par: all good ?2J" in error.stderr
    assert b"nodes left out of the answer: 4=down?]0;owned?" in warned.stderr
    assert b"damaged capture data skipped: pcap.1?[31m" in warned.stderr


# par's main, then the most memory its process held (VmHWM: counted from the exec, not the fork).
MEASURED = """
import sys
from par_client.cli import main
status = main(sys.argv[2:])
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
open(sys.argv[1], "w").write(peak)
sys.exit(status)
"""


def test_an_error_body_is_read_bounded_even_when_it_unpacks_to_hundreds_of_megabytes(env, tmp_path):
    full_env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(CLIENT_DIR), "HOME": str(tmp_path), **env}
    peak = tmp_path / "peak"
    argv = [sys.executable, "-c", MEASURED, str(peak), "pcap", "src_port=bomb", "start_time=-1h", "-o", "-"]
    result = subprocess.run(argv, env=full_env, capture_output=True, timeout=60)
    assert result.returncode == 3 and result.stderr.startswith(b"par: HTTP 500"), result.stderr
    held = int(peak.read_text()) // 1024
    assert held < 100, f"{held} MiB held reading a {BOMB_SIZE >> 20} MiB error body"


def test_output_into_a_missing_directory_fails_before_anything_is_asked(fake, env, tmp_path):
    before = len(fake.asked)
    result = par("pcap", "start_time=-1h", "-o", str(tmp_path / "no" / "such.pcap"), env=env)
    assert result.returncode == 6 and b"no such directory" in result.stderr
    assert len(fake.asked) == before


def test_tls_to_a_plain_http_server_says_so(fake, env):
    url = fake.url.replace("http://", "https://")
    started = time.monotonic()
    result = par("ping", "--timeout", "3", env={**env, "PAR_URL": url})
    assert result.returncode == 4
    assert b"the server answers plain HTTP (use http://127.0.0.1:" in result.stderr, result.stderr
    assert time.monotonic() - started < 30


@pytest.fixture
def tls_collector(tmp_path) -> Iterator[tuple[FakeCollector, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed for the test certificate")
    cert, key = tmp_path / "collector.pem", tmp_path / "collector.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server = FakeCollector(answer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    yield server, cert
    server.close()


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_cacert_and_the_configs_ca_bundle_hold_whatever_the_environment_says(
    tls_collector, tmp_path, variable
):
    server, cert = tls_collector
    url = server.url.replace("http://", "https://")
    env = {"PAR_URL": url, "PAR_API_KEY": KEY, variable: ssl.get_default_verify_paths().openssl_cafile}
    given = par("ping", "--cacert", str(cert), env=env)
    assert given.returncode == 0, given.stderr
    config = tmp_path / "config"
    config.write_text(f"ca_bundle = {cert}\n")
    config.chmod(0o600)
    configured = par("ping", env={**env, "PAR_CONFIG": str(config)})
    assert configured.returncode == 0, configured.stderr
    unknown = par("ping", env=env)  # the environment's bundle does not know this certificate
    assert unknown.returncode == 4 and b"TLS failed" in unknown.stderr
