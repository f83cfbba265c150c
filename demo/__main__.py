"""``make demo``: both roles on loopback, with demo captures, and a working curl.

Writes everything under ``var/demo/`` (captures, filed tree, databases), files
the captures with the real filer, starts a node and a collector under
gunicorn, registers the node and an admin API key, fetches one flow through
the collector to prove the chain works, prints a ready-to-paste curl and
serves until Ctrl-C, capturing on: generated traffic goes on growing a live
capture file, and the real filer's loop files each one that is finished. One
demo runs at a time (a lock beside ``var/demo/``); its admin password and API
key are kept beside it too (``var/demo-credentials.json``), the same at every run. Stopping it stops everything it started: Ctrl-C, SIGTERM
and SIGHUP (a closed terminal) stop both servers; should the demo itself be
killed outright, the kernel stops them (each asks for SIGTERM when it dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import requests

from demo.live import start_live_capture
from node.jobs import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("PAR_DEMO_DIR") or ROOT / "var" / "demo")
FILE_SECONDS = 60
FILES = 6  # five finished files and the one "still being written"
# The live capture's files and the filer's pass, in seconds (shorter in the tests).
LIVE_SECONDS = int(os.environ.get("PAR_DEMO_LIVE_SECONDS") or FILE_SECONDS)
FILER_EVERY = int(os.environ.get("PAR_DEMO_FILER_EVERY") or 30)
CREDENTIALS = DEMO.with_name(DEMO.name + "-credentials.json")


def hold_demo_lock() -> object:
    """This demo's lock (kept open while it runs); a second demo stops with a message instead of
    deleting the first one's files from under it."""
    DEMO.parent.mkdir(parents=True, exist_ok=True)
    lock = open(DEMO.with_name(DEMO.name + ".lock"), "a+")  # noqa: SIM115 - held until the demo exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip() or "?"
        sys.exit(
            f"another `make demo` is running (pid {pid}) and uses {DEMO}: stop it first (Ctrl-C in its"
            " terminal), or run this one elsewhere with PAR_DEMO_DIR=/tmp/demo2 DEMO_PORTS=19001,19002"
        )
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def demo_credentials() -> tuple[str, str, bool]:
    """(admin password, API key, kept from a previous run): made once, kept in CREDENTIALS (0600)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        kept = json.loads(CREDENTIALS.read_text())
        return str(kept["password"]), str(kept["api_key"]), True
    sys.path.insert(0, str(ROOT))
    from collector.keys import generate_key

    password, key = secrets.token_urlsafe(12), generate_key()
    fd = os.open(CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"password": password, "api_key": key}, out)
    return password, key, False


def _port(preferred: int) -> int:
    """The preferred port when it is free, else any free loopback port.

    Free as gunicorn sees it: it binds with SO_REUSEADDR, so the connections a previous demo left
    in TIME_WAIT on the port do not make it look taken.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


def demo_ports(text: str | None) -> tuple[int, int]:
    """(collector, node) ports: DEMO_PORTS=COLLECTOR,NODE exactly, else 9001 and 9002 or free ones."""
    if not text or not text.strip():
        return _port(9001), _port(9002)
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and 1 <= int(p) <= 65535 for p in parts):
        sys.exit(f"DEMO_PORTS must be two ports, the collector's and the node's (19001,19002), not {text!r}")
    ports = int(parts[0]), int(parts[1])
    if ports[0] == ports[1]:
        sys.exit("DEMO_PORTS: the collector and the node need two different ports")
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as _port(), as gunicorn
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                sys.exit(f"DEMO_PORTS: port {port} on 127.0.0.1 is not free ({exc.strerror})")
    return ports


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"manage.py {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def write_demo_captures(capture_dir: Path, now: int):
    """Several minutes of real conversations (DNS, HTTP, TLS) in rotating ``pcap.<epoch>`` files.

    Returns the conversations, the busiest first, and the first file's epoch.
    """
    sys.path.insert(0, str(ROOT))
    from pcapgen import write_pcap
    from pcapgen.sessions import session_traffic

    first = now - FILES * FILE_SECONDS
    records, flows = session_traffic(first * 10**9, FILES * FILE_SECONDS, seed=7)
    for n in range(FILES):
        start = first + n * FILE_SECONDS
        low, high = start * 10**9, (start + FILE_SECONDS) * 10**9
        path = capture_dir / f"pcap.{start}"
        write_pcap(path, [(ts, frame) for ts, frame in records if low <= ts < high])
        os.utime(path, (start + FILE_SECONDS, start + FILE_SECONDS))
    return flows, first


def _serve(role: str, env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    out = open(log, "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [str(gunicorn), "parsite.wsgi", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env={**env, "PAR_BIND": f"127.0.0.1:{port}"},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the demo only, which stops the servers in order
        preexec_fn=lambda: die_with_parent(signal.SIGTERM),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the {role} did not start; see {log}:\n{log.read_text()[-2000:]}")
        try:
            requests.get(f"http://127.0.0.1:{port}/ping", timeout=5)
            return process
        except requests.RequestException:
            time.sleep(0.2)
    sys.exit(f"the {role} did not answer on port {port}; see {log}")


def main() -> None:
    collector_port, node_port = demo_ports(os.environ.get("DEMO_PORTS"))
    lock = hold_demo_lock()  # noqa: F841 - held until the demo exits
    if DEMO.exists():
        shutil.rmtree(DEMO)
    capture_dir, filer_dir = DEMO / "capture", DEMO / "filed"
    for path in (capture_dir, filer_dir, DEMO / "node", DEMO / "collector"):
        path.mkdir(parents=True)
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("PAR_", "DJANGO_")) and k != "DATABASE_URL"
    }
    node_env = {
        **base,
        "PAR_ROLE": "node",
        "PAR_DATA_DIR": str(DEMO / "node"),
        "PAR_CAPTURE_DIR": str(capture_dir),
        "PAR_FILER_DIR": str(filer_dir),
    }
    # Plain HTTP on loopback: the admin's cookies may not require TLS here.
    collector_env = {
        **base,
        "PAR_ROLE": "collector",
        "PAR_DATA_DIR": str(DEMO / "collector"),
        "DJANGO_SECURE_COOKIES": "false",
    }

    now = int(time.time())
    print("== writing demo captures")
    flows, first = write_demo_captures(capture_dir, now)
    print("== filing them (manage.py runfiler)")
    print(_manage(node_env, "runfiler").rstrip())

    print("== collector database")
    _manage(collector_env, "migrate", "--noinput")
    password, key, kept = demo_credentials()
    _manage(
        {**collector_env, "DJANGO_SUPERUSER_PASSWORD": password},
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@localhost",
    )
    # The superuser has the admin grant on the web page; the API key is the one kept (passed in the
    # environment, never on a command line others may read).
    _manage(
        {**collector_env, "PAR_DEMO_KEY": key},
        "shell",
        "-c",
        "import os; from collector.models import ApiKey; row = ApiKey(name='demo analyst', admin=True); "
        "row.set_key(os.environ['PAR_DEMO_KEY']); row.save()",
    )

    nodes_conf = DEMO / "nodes.conf"
    nodes_conf.write_text(json.dumps({"1": f"127.0.0.1:{node_port}"}))
    print(_manage(collector_env, "importconfig", "--node-file", str(nodes_conf)).rstrip())

    # The busiest web page fetch: the flow the demo fetches and prints a curl for.
    shown = next(flow for flow in flows if flow.kind == "http")
    children: list[subprocess.Popen] = []
    for signum in (signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal was closed
        signal.signal(signum, lambda *_: sys.exit(0))
    try:
        serve_and_show(
            children,
            node_env,
            collector_env,
            node_port,
            collector_port,
            shown,
            first,
            now,
            key,
            password,
            kept,
        )
    except KeyboardInterrupt:
        pass
    finally:
        stop(children)


def stop(children: list[subprocess.Popen]) -> None:
    """Stop the servers: SIGTERM to each one's process group, SIGKILL after 20 s."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not leave them half-stopped
    with contextlib.suppress(OSError):  # the terminal is gone (SIGHUP)
        print("\n== stopping the node and the collector", flush=True)
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def serve_and_show(
    children, node_env, collector_env, node_port, collector_port, flow, first, now, key, password, kept
):
    """Start both servers, fetch ``flow`` through the collector, print the curl, serve, capture on."""
    print(f"== node on 127.0.0.1:{node_port}, collector on 127.0.0.1:{collector_port}")
    children.append(_serve("node", node_env, node_port, DEMO / "node.log"))
    children.append(_serve("collector", collector_env, collector_port, DEMO / "collector.log"))
    print(f"== capturing on: a live capture file every {LIVE_SECONDS} s, filed by the filer's loop")
    start_live_capture(Path(node_env["PAR_CAPTURE_DIR"]), now, LIVE_SECONDS)
    children.append(_filer_loop(node_env, DEMO / "filer.log"))

    start = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d %H:%M:%S")
    end = datetime.fromtimestamp(now + 60, UTC).strftime("%Y-%m-%d %H:%M:%S")
    query = urlencode(
        {
            "src_addr": flow.a,
            "src_port": flow.a_port,
            "dst_addr": flow.b,
            "dst_port": flow.b_port,
            "start_time": start,
            "end_time": end,
            "node_id": 1,
        }
    )
    url = f"http://127.0.0.1:{collector_port}/data.pcap?{query}"
    answer = requests.get(url, headers={"Authorization": f"Api-Key {key}"}, timeout=120)
    if answer.status_code != 200:
        sys.exit(f"the demo query failed: {answer.status_code} {answer.text}")
    out = DEMO / "flow.pcap"
    out.write_bytes(answer.content)
    packets = _count_records(answer.content)
    proto = {6: "tcp", 17: "udp", 132: "sctp"}[flow.proto]
    print(
        f"\nFetched {proto} {flow.a}:{flow.a_port} <-> {flow.b}:{flow.b_port} through the collector:\n"
        f"  {packets} packets, {len(answer.content)} bytes -> {out}\n"
        f"\nFetch it again:\n\n"
        f"  curl -H 'Authorization: Api-Key {key}' -o flow.pcap '{url}'\n"
        f"\nPage:     http://127.0.0.1:{collector_port}/ui/  (admin / {password})\n"
        f"Admin:    http://127.0.0.1:{collector_port}/admin/\n"
        f"API docs: http://127.0.0.1:{collector_port}/docs\n"
        f"Logs:     {DEMO}/node.log, {DEMO}/collector.log, {DEMO}/filer.log\n"
        f"\nThe admin password and the API key {'are the ones kept in' if kept else 'were made now and kept in'}"
        f" {CREDENTIALS}:\nthe same at every `make demo`; delete that file for new ones.\n"
        f"\nServing until Ctrl-C."
    )
    while True:
        for child in children:
            if child.poll() is not None:
                sys.exit("a server stopped unexpectedly; see the logs")
        time.sleep(1)


def _filer_loop(env: dict[str, str], log: Path) -> subprocess.Popen:
    """The real filer's loop (``runfiler --loop``), filing each capture file once it is finished."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "runfiler", "--loop", str(FILER_EVERY)],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115 - lives as long as the filer
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: die_with_parent(signal.SIGTERM),
    )


def _count_records(pcap: bytes) -> int:
    """Records of a classic little-endian pcap."""
    count, offset = 0, 24
    while offset + 16 <= len(pcap):
        offset += 16 + int.from_bytes(pcap[offset + 8 : offset + 12], "little")
        count += 1
    return count


if __name__ == "__main__":
    main()
