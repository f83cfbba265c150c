"""Exports as jobs: a large export through a job vs the same streamed GET; 10 jobs by 5 keys while
small calls go on; a worker killed 3 times during a job (SPEC "Exports", docs/exports.md).

    .venv/bin/python bench/exports.py [--mb 1024] [--jobs-mb 50]

Everything on loopback, on this machine: a node under gunicorn, a collector under gunicorn, and
one ``manage.py runexports`` worker on the collector's database.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests
from harness import ROOT, collector_env, load_average, manage, server

sys.path.insert(0, str(ROOT))
import pcapgen as g  # noqa: E402

T0 = 1_700_000_000
BIG = {"src_addr": "10.0.0.1", "src_port": "1234", "dst_addr": "10.0.0.2", "dst_port": "80"}
SMALL = {"src_addr": "10.0.0.3", "src_port": "53", "dst_addr": "10.0.0.4", "dst_port": "5353"}
WINDOW = {"start_time": str(T0), "end_time": str(T0 + 59)}
ADMIN = "54b22f56-9a84-4893-bc70-332e3b5ded66"
KEYS = [f"{i}b6a7d0e-51a3-4b8e-9f0f-3f1d2c4b5a61" for i in range(1, 6)]


def write_capture(path: Path, megabytes: int) -> int:
    big = g.ether(g.tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"x" * 1400))
    small = g.ether(g.udp("10.0.0.3", 53, "10.0.0.4", 5353, b"q" * 80))
    count = megabytes * 1_000_000 // (len(big) + 16)
    step = 50 * 10**9 // count

    def records():
        for i in range(count):
            yield T0 * 10**9 + i * step, big
            if i % max(1, count // 100) == 0:
                yield T0 * 10**9 + i * step + 1, small

    g.write_pcap(path, records())
    return path.stat().st_size


@contextmanager
def worker(env: dict[str, str], log: Path, nice: int = 10) -> Iterator[subprocess.Popen]:
    before = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runexports", "--nice", str(nice)],
            cwd=ROOT,
            env={**os.environ, "PAR_ROLE": "collector", "DJANGO_SETTINGS_MODULE": "parsite.settings", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while b"Starting worker" not in log.read_bytes()[before:]:  # the database worker's first line
        assert process.poll() is None and time.monotonic() < deadline, f"the worker did not start: {log}"
        time.sleep(0.1)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def api(url: str, key: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {key}"
    session.base = url  # type: ignore[attr-defined]
    return session


def start(session: requests.Session, params: dict) -> dict:
    answer = session.post(f"{session.base}/exports", params=params, timeout=60)  # type: ignore[attr-defined]
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def job(session: requests.Session, job_id: int) -> dict:
    return session.get(f"{session.base}/exports/{job_id}", timeout=60).json()  # type: ignore[attr-defined]


def wait_done(session: requests.Session, job_id: int, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = job(session, job_id)
        if state["state"] not in ("queued", "running"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def download_sha(session: requests.Session, path: str) -> tuple[str, int, float]:
    started = time.monotonic()
    digest, size = hashlib.sha256(), 0
    with session.get(f"{session.base}{path}", stream=True, timeout=600) as answer:  # type: ignore[attr-defined]
        assert answer.status_code == 200, answer.status_code
        for chunk in answer.iter_content(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, time.monotonic() - started


def p99(times: list[float]) -> float:
    return sorted(times)[max(0, int(len(times) * 0.99) - 1)] if times else float("nan")


def calls(
    session: requests.Session, path: str, params: dict, stop: threading.Event, out: list[float]
) -> None:
    while not stop.is_set() and len(out) < 5000:
        started = time.monotonic()
        try:
            answer = session.get(f"{session.base}{path}", params=params, timeout=30)  # type: ignore[attr-defined]
            _ = answer.content  # read whole, as a client does
        except requests.ConnectionError:  # a kept connection the server closed while idle: not timed
            continue
        out.append(time.monotonic() - started)
        stop.wait(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the large flow's capture, in MB")
    parser.add_argument("--jobs-mb", type=int, default=50, help="limit_bytes of each of the 10 jobs, in MB")
    parser.add_argument("--reuse", action="store_true", help="keep the capture of the last run (same --mb)")
    args = parser.parse_args()
    out = ROOT / "bench" / "out" / "exports"
    filed = list((out / "filed").rglob(f"pcap.{T0}")) if args.reuse else []
    for name in ("node", "collector") if filed else ("",):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "node").mkdir(parents=True)
    if filed:
        size = filed[0].stat().st_size
    else:
        (out / "capture").mkdir(parents=True)
        (out / "filed").mkdir()
        size = write_capture(out / "capture" / f"pcap.{T0}", args.mb)
        g.write_pcap(
            out / "capture" / f"pcap.{T0 + 60}",
            [((T0 + 60) * 10**9, g.ether(g.udp("10.9.9.9", 1, "10.9.9.8", 2)))],
        )
    node_env = {
        "PAR_DATA_DIR": str(out / "node"),
        "PAR_CAPTURE_DIR": str(out / "capture"),
        "PAR_FILER_DIR": str(out / "filed"),
        "PAR_MAX_WINDOW": "3600",
    }
    if not filed:
        manage(node_env, "runfiler", role="node")
    env = collector_env(
        out / "collector",
        PAR_KEY_STREAMS="16",
        PAR_KEY_EXPORTS="2",
        PAR_EXPORT_LEASE="3",
        PAR_EXPORT_ATTEMPTS="4",
        PAR_NODE_READ_TIMEOUT="600",
    )
    print(f"capture {size / 1e6:.0f} MB (filed, indexed); {load_average()}; the machine is shared")
    with ExitStack() as stack:
        node = stack.enter_context(server("node", node_env, out / "node.log"))
        directory = Path(env["PAR_DATA_DIR"])
        (directory / "nodes.conf").write_text(f'{{"1": "{node.removeprefix("http://")}"}}')
        keys = {ADMIN: ["0"], **{key: ["1"] for key in KEYS}}
        (directory / "api.conf").write_text(str(keys).replace("'", '"'))
        manage(env, "migrate", "--noinput")
        manage(
            env,
            "importconfig",
            "--api-file",
            str(directory / "api.conf"),
            "--node-file",
            str(directory / "nodes.conf"),
        )
        collector = stack.enter_context(server("collector", env, out / "collector.log"))
        admin = api(collector, ADMIN)
        big = {"node_id": "1", **BIG, **WINDOW}
        rows = []

        # 1. The large export through a job vs the streamed GET, back to back.
        started = time.monotonic()
        digest, streamed_size, _ = download_sha(
            admin, "/data.pcap?" + "&".join(f"{k}={v}" for k, v in big.items())
        )
        streamed = time.monotonic() - started
        with worker(env, out / "worker.log", nice=0):  # like for like: the GET is served un-niced
            started = time.monotonic()
            done = wait_done(admin, start(admin, big)["id"])
            job_wall = time.monotonic() - started
            job_sha, job_size, fetch = download_sha(admin, done["download"])
        exact = job_sha == digest == done["sha256"] and job_size == streamed_size
        print(
            f"streamed GET {streamed:.1f} s, {streamed_size / 1e6:.0f} MB; job {job_wall:.1f} s + download {fetch:.1f} s; same bytes: {exact}"
        )
        rows.append((f"{args.mb} MB export: job vs streamed GET (wall)", "≤ 1.2x, same bytes",
                     f"{job_wall / streamed:.2f}x ({job_wall:.1f} s vs {streamed:.1f} s; +{fetch:.1f} s to download); same bytes: {exact}"))  # fmt: skip

        # 2. 10 jobs queued at once by 5 keys while /ping and a small /data.pcap are timed.
        sessions = [api(collector, key) for key in KEYS]
        idle_ping: list[float] = []
        idle_small: list[float] = []
        stop = threading.Event()
        small = {"node_id": "1", **SMALL, **WINDOW}
        for path, params, times in (("/ping", {}, idle_ping), ("/data.pcap", small, idle_small)):
            threading.Timer(3, stop.set).start()
            calls(admin, path, params, stop, times)
            stop.clear()
        with worker(env, out / "worker.log"):
            pings: list[float] = []
            smalls: list[float] = []
            stop = threading.Event()
            timers = [
                threading.Thread(target=calls, args=(admin, "/ping", {}, stop, pings)),
                threading.Thread(target=calls, args=(admin, "/data.pcap", small, stop, smalls)),
            ]
            for thread in timers:
                thread.start()
            started = time.monotonic()
            jobs = []
            for n in range(10):
                session = sessions[n % 5]
                limit = str(args.jobs_mb * 1_000_000 + n)  # ten different queries
                jobs.append((session, start(session, {**big, "limit_bytes": limit})["id"]))
            states = [wait_done(session, job_id)["state"] for session, job_id in jobs]
            ten = time.monotonic() - started
            stop.set()
            for thread in timers:
                thread.join()
        print(f"10 jobs: {states.count('done')} done in {ten:.1f} s; /ping p99 {p99(pings) * 1000:.0f} ms (idle {p99(idle_ping) * 1000:.0f}), "
              f"small /data.pcap p99 {p99(smalls) * 1000:.0f} ms (idle {p99(idle_small) * 1000:.0f}), medians {statistics.median(pings) * 1000:.0f}/{statistics.median(smalls) * 1000:.0f} ms")  # fmt: skip
        rows.append(
            (
                "10 jobs by 5 keys: /ping p99 while they run",
                "≤ 100 ms",
                f"{p99(pings) * 1000:.0f} ms (idle {p99(idle_ping) * 1000:.0f} ms; {len(pings)} calls)",
            )
        )
        rows.append(
            (
                "10 jobs by 5 keys: small /data.pcap p99",
                "≤ 100 ms",
                f"{p99(smalls) * 1000:.0f} ms (idle {p99(idle_small) * 1000:.0f} ms; {len(smalls)} calls)",
            )
        )
        rows.append(
            (
                "10 jobs by 5 keys: all done",
                "10 done",
                f"{states.count('done')} done in {ten:.1f} s ({args.jobs_mb} MB each)",
            )
        )

        # 3. A worker killed (SIGKILL) 3 times during one job: the file is still exact.
        killed = start(admin, {**big, "end_time": str(T0 + 58)})
        expected, _, _ = download_sha(
            admin, "/data.pcap?" + "&".join(f"{k}={v}" for k, v in {**big, "end_time": str(T0 + 58)}.items())
        )
        for attempt in (1, 2, 3):
            with worker(env, out / "worker.log") as process:
                while True:
                    state = job(admin, killed["id"])
                    if state["state"] == "running" and state["attempts"] == attempt and state["bytes"] > 0:
                        break
                    time.sleep(0.05)
                process.send_signal(signal.SIGKILL)
                process.wait()
        with worker(env, out / "worker.log"):
            final = wait_done(admin, killed["id"])
        sha, _, _ = download_sha(admin, final["download"]) if final["state"] == "done" else ("", 0, 0)
        print(
            f"killed 3 times: {final['state']} after {final['attempts']} attempts; exact: {sha == expected}"
        )
        rows.append(
            (
                "worker killed 3 times during a job",
                "file exact",
                f"{final['state']} after {final['attempts']} attempts (PAR_EXPORT_ATTEMPTS=4); sha256 equal to the streamed GET's: {sha == expected}",
            )
        )
        print("\n| figure | goal | measured |\n| --- | --- | --- |")
        for row in rows:
            print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
