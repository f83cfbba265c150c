"""Helpers for tests against real servers: a collector database of its own, hung nodes, rows."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url

from tests.servers import ROOT

_IP = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def _postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres:", "postgresql:", "pgsql:")) else None


def _pg_connect(url: str, **kwargs):
    import psycopg

    conf = dj_database_url.parse(url)
    return psycopg.connect(
        dbname=conf["NAME"],
        user=conf["USER"],
        password=conf["PASSWORD"],
        host=conf["HOST"],
        port=conf["PORT"] or 5432,
        **kwargs,
    )


@contextmanager
def live_database(directory: Path) -> Iterator[str]:
    """DATABASE_URL of an empty, migrated database for a collector under gunicorn.

    On PostgreSQL (DATABASE_URL set so) a fresh database beside the suite's,
    dropped afterwards; otherwise a SQLite file in ``directory``.
    """
    base = _postgres_url()
    if base is None:
        url = f"sqlite:///{directory / 'collector.sqlite3'}"
        manage({"DATABASE_URL": url, "PAR_DATA_DIR": str(directory)}, "migrate", "--noinput")
        yield url
        return
    name = f"par_live_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    with _pg_connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        manage({"DATABASE_URL": url, "PAR_DATA_DIR": str(directory)}, "migrate", "--noinput")
        yield url
    finally:
        _drop_database(base, name)


def _drop_database(base: str, name: str) -> None:
    """Drop ``name``: this role's sessions in it ended first, then a plain DROP.

    Not ``WITH (FORCE)``: that must be allowed to end every session, and an autovacuum worker in
    the new database is the superuser's; a plain DROP ends autovacuum itself. A session just
    ended may take a moment to go: the DROP is tried again for a while.
    """
    import psycopg

    deadline = time.monotonic() + 30
    with _pg_connect(base, autocommit=True) as admin:
        while True:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()",
                (name,),
            )
            try:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py`` with ``env``; its stdout, or an AssertionError with its stderr."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "parsite.settings", "PAR_ROLE": "collector", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stderr}"
    return result.stdout


def import_config(env: dict[str, str], directory: Path, nodes: dict, grants: dict) -> None:
    """The seed's files (``nodes.conf``, ``api.conf``) written in ``directory`` and imported."""
    (directory / "nodes.conf").write_text(json.dumps(nodes))
    (directory / "api.conf").write_text(json.dumps(grants))
    manage(
        env,
        "importconfig",
        "--api-file",
        str(directory / "api.conf"),
        "--node-file",
        str(directory / "nodes.conf"),
    )


def rows(url: str, sql: str) -> list[tuple]:
    """Rows of ``sql`` in the live collector's database."""
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return db.execute(sql).fetchall()
    with _pg_connect(url) as db:
        # PostgreSQL's inet columns come back as ipaddress objects: compare as text, as SQLite stores them.
        return [tuple(str(v) if isinstance(v, _IP) else v for v in row) for row in db.execute(sql).fetchall()]


def log_count(url: str) -> int:
    """How many request-log rows the live collector's database holds."""
    return rows(url, "SELECT COUNT(*) FROM collector_requestlog")[0][0]


def newest_log_row(url: str, columns: str, before: int, timeout: float = 10.0) -> tuple:
    """``columns`` of the newest request-log row, once there are more than ``before`` rows.

    The collector writes a request's row after the answer's last byte went out, so a client
    holding its whole answer may look before the row is there: this waits for it.
    """
    deadline = time.monotonic() + timeout
    while log_count(url) <= before:
        assert time.monotonic() < deadline, f"no new request-log row after {timeout} s"
        time.sleep(0.02)
    (row,) = rows(url, f"SELECT {columns} FROM collector_requestlog ORDER BY id DESC LIMIT 1")
    return row


def worker_pids(arbiter_pid: int) -> list[int]:
    """The gunicorn workers of an arbiter (its child processes)."""
    children = Path(f"/proc/{arbiter_pid}/task/{arbiter_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a process: the most resident memory it ever had, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise LookupError("no VmHWM")


class HungNode:
    """A server that accepts connections, reads what it is sent, and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.received = bytearray()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            self._conns.append(conn)
            with contextlib.suppress(OSError):
                self.received += conn.recv(65536)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._conns:
            conn.close()
        self.listener.close()


class WrongServer:
    """Something else listening where a node should be (say, a web server's error page)."""

    def __init__(
        self, status: int, body: bytes, content_type: str = "text/html", headers: dict[str, str] | None = None
    ) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every request
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                seen.append((self.path, dict(self.headers)))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _SocketNode:
    """A fake node on a loopback port: accepts connections in a thread, each answered by ``_answer``."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._accepted(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _accepted(self, conn: socket.socket) -> None:
        """Called with each connection before its thread starts."""

    def _answer(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.listener.close()


class DyingNode(_SocketNode):
    """A node that answers 200 with a pcap type, sends ``prefix`` of its body, then dies or hangs.

    ``hang=False``: the connection is closed without ending the chunked body (a crash).
    ``hang=True``: nothing more is sent until ``close()`` (a node stuck mid-answer).
    """

    def __init__(self, prefix: bytes, *, hang: bool = False) -> None:
        self.prefix = prefix
        self.hang = hang
        self.requests: list[str] = []
        super().__init__()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
            self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
            answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\n"
            answer += b"Transfer-Encoding: chunked\r\n\r\n"
            if self.prefix:
                answer += f"{len(self.prefix):x}\r\n".encode() + self.prefix + b"\r\n"
            with contextlib.suppress(OSError):
                conn.sendall(answer)
                if self.hang:
                    self._stop.wait()


class KeepAliveNode(_SocketNode):
    """A node speaking HTTP/1.1 keep-alive: every request answered with a small pcap (HEAD: its head).

    The body has a Content-Length, or is ``chunked`` (as a node streams one). It counts the
    connections it accepted; ``restart()`` closes every one of them (as a node restarted between
    two calls), and ``drop_next`` requests are answered by closing their connection without a byte
    (a kept connection the node closed just as a request went out).
    """

    def __init__(
        self, body: bytes, content_type: str = "application/vnd.tcpdump.pcap", *, chunked: bool = False
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.chunked = chunked
        self.connections = 0
        self.requests: list[str] = []
        self.drop_next = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        super().__init__()

    def _accepted(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._open.append(conn)

    def _answer(self, conn: socket.socket) -> None:
        buffered = b""
        with contextlib.suppress(OSError), conn:
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                with self._lock:
                    self.requests.append(line)
                    drop, self.drop_next = self.drop_next > 0, max(0, self.drop_next - 1)
                if drop:
                    return
                if self.chunked:
                    length, body = (
                        "Transfer-Encoding: chunked",
                        b"%x\r\n%s\r\n0\r\n\r\n"
                        % (
                            len(self.body),
                            self.body,
                        ),
                    )
                else:
                    length, body = f"Content-Length: {len(self.body)}", self.body
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\n{length}\r\n\r\n"
                conn.sendall(head.encode() + (b"" if line.startswith("HEAD ") else body))

    def restart(self) -> None:
        """Close every connection open, as a node going down and up again between two calls."""
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        super().close()
        self.restart()
