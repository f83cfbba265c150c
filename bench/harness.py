"""What the serving benchmarks share: gunicorn of either role on loopback, manage.py, a collector set up.

Used by bench/load.py, bench/latency.py and bench/multinode.py (tests have their own, tests/servers.py);
imported by name (``import harness``): a script's folder is on its path.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(role: str, env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PAR_ROLE": role, "DJANGO_SETTINGS_MODULE": "parsite.settings", **env}


@contextmanager
def server(role: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """``gunicorn parsite.wsgi -c gunicorn.conf.py`` for ``role``; yields its URL once /ping answers."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(GUNICORN), "parsite.wsgi", "-c", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env={**_env(role, env), "PAR_BIND": f"127.0.0.1:{port}"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/ping", timeout=5)
                break
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{role} did not start: see {log}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def manage(env: dict[str, str], *args: str, role: str = "collector") -> None:
    """``manage.py ARGS`` for ``role`` with ``env``; its output is kept unless it fails."""
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_env(role, env),
        check=True,
        capture_output=True,
        timeout=300,
    )


def collector_env(directory: Path, **extra: str) -> dict[str, str]:
    """A collector's environment with its state under ``directory`` (made here)."""
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "PAR_DATA_DIR": str(directory),
        "DATABASE_URL": f"sqlite:///{directory / 'par.sqlite3'}",
        "PAR_KEY_PEPPER": "bench-pepper",
        "PAR_KEY_RATE": "0",
        **extra,
    }


def set_up_collector(env: dict[str, str], nodes: list[str], admin_key: str) -> None:
    """Migrate the collector's database and import ``nodes`` (ids 1..n) and an admin key."""
    directory = Path(env["PAR_DATA_DIR"])
    (directory / "nodes.conf").write_text(
        json.dumps({str(i + 1): url.removeprefix("http://") for i, url in enumerate(nodes)})
    )
    (directory / "api.conf").write_text(json.dumps({admin_key: ["0"]}))
    manage(env, "migrate", "--noinput")
    manage(
        env,
        "importconfig",
        "--api-file",
        str(directory / "api.conf"),
        "--node-file",
        str(directory / "nodes.conf"),
    )


def load_average() -> str:
    """The machine's load average (1, 5, 15 minutes), as ``uptime`` prints it."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"
