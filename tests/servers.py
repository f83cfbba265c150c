"""Real servers for tests: gunicorn processes of either role on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


# The production settings docs/operator.md documents ("Deployment"); check --deploy must pass with them.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "x7Gk2-pL9qW4zR8vN1mB5tY3cH6jD0sF-aE7uI2oP4lK9wQ1zX5nM8bV3cT6yR0",
    "DJANGO_ALLOWED_HOSTS": "par.example.org",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_BEHIND_TLS_PROXY": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
}
# The seed README's example query (without node_id and api_key).
SEED_QUERY = {
    "src_addr": "1.1.1.1",
    "src_port": "111",
    "dst_addr": "2.2.2.2",
    "dst_port": "222",
    "start_time": "2001-01-01 5:01pm",
    "end_time": "2001-01-01 5:05pm",
}


def run(
    argv: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run a command of the project (manage.py, gunicorn, python -c) from its root, output captured."""
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A loopback port nothing listens on now (for a server that binds it itself, or an address with
    nobody there). A server of the tests' own gets its socket from ``listening_socket`` instead."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_socket(port: int = 0) -> socket.socket:
    """A socket listening on 127.0.0.1:``port`` (0: a free one the kernel picks), inheritable, for a
    server process to take over (gunicorn's ``fd://``).

    Race-free, unlike a port picked by ``free_port`` and bound by the server later: between the two,
    another test process (``pytest -n``, another checkout's suite) may have picked the same one.
    """
    sock = socket.socket()
    # As gunicorn binds: a server restarted on the same port while old connections wait in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class Server:
    role: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def gunicorn(
    role: str, env: dict[str, str], *, port: int | None = None, workers: int = 1
) -> Iterator[Server]:
    """Start ``gunicorn parsite.wsgi`` for ``role`` and wait until /ping answers (any status).

    gunicorn is handed a socket already listening (``PAR_BIND=fd://N``): no other process can take
    its port between choosing and binding it.
    """
    listener = listening_socket(port or 0)
    port = listener.getsockname()[1]
    data_dir = Path(env.get("PAR_DATA_DIR") or os.environ.get("PAR_DATA_DIR") or ROOT / "var")
    log_path = data_dir / f"gunicorn-{role}-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "PAR_ROLE": role,
        "PAR_BIND": f"fd://{listener.fileno()}",
        "PAR_WORKERS": str(workers),
        "DJANGO_SETTINGS_MODULE": "parsite.settings",
        **env,
    }
    # The tests' copy of the socket is closed once gunicorn has its own: only gunicorn holds the port
    # (when it stops, the port refuses connections rather than leaving them unanswered).
    with open(log_path, "wb") as log, listener:
        process = subprocess.Popen(
            [str(GUNICORN), "parsite.wsgi", "-c", str(ROOT / "gunicorn.conf.py")],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )
    server = Server(role=role, url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn ({role}) exited {process.returncode}:\n{server.log()}")
            try:
                requests.get(f"{server.url}/ping", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):  # a busy machine boots workers slowly
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn ({role}) did not answer:\n{server.log()}") from None
                time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
