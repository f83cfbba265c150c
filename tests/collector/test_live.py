"""The collector under gunicorn in front of a real node under gunicorn."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pcapgen import ether, pcap_bytes, tcp, udp, write_pcap
from tests.collector.live import (
    HungNode,
    import_config,
    live_database,
    log_count,
    manage,
    newest_log_row,
    peak_rss_kib,
    worker_pids,
)
from tests.servers import Server, free_port, gunicorn

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
ADMIN = "54b22f56-9a84-4893-bc70-332e3b5ded66"
ANALYST = "d5c3d52e-d42c-41ff-bbfa-d3e802770ee1"  # nodes 1 and 3
PEPPER = "live-test-pepper"
FLOW = {"src_addr": "10.0.0.1", "src_port": "1234", "dst_addr": "10.0.0.2", "dst_port": "80"}
WINDOW = {"start_time": str(T0), "end_time": str(T0 + 60)}


def flow_records() -> list[tuple[int, bytes]]:
    """Both directions of the flow in the window, plus look-alikes that must not match."""
    records = []
    for i in range(200):
        ts = (T0 + 1) * 10**9 + i * 7_000_000
        forward = i % 3 != 0
        packet = (
            tcp("10.0.0.1", 1234, "10.0.0.2", 80, bytes([i % 256]) * (i % 700), seq=i)
            if forward
            else tcp("10.0.0.2", 80, "10.0.0.1", 1234, b"ok", seq=i)
        )
        records.append((ts, ether(packet)))
        records.append((ts + 1000, ether(tcp("10.0.0.1", 1235, "10.0.0.2", 80, b"other port"))))
        records.append((ts + 2000, ether(udp("10.0.0.3", 1234, "10.0.0.2", 80, b"other host"))))
    return records


def is_wanted(frame: bytes) -> bool:
    return b"other" not in frame


def node_env(base: Path, name: str) -> dict[str, str]:
    capture, filed = base / name / "capture", base / name / "filed"
    capture.mkdir(parents=True)
    filed.mkdir(parents=True)
    return {
        "PAR_DATA_DIR": str(base / name),
        "PAR_CAPTURE_DIR": str(capture),
        "PAR_FILER_DIR": str(filed),
        "DATABASE_URL": f"sqlite:///{base / name / 'db.sqlite3'}",
    }


@pytest.fixture(scope="module")
def real_node(tmp_path_factory) -> Iterator[Server]:
    env = node_env(tmp_path_factory.mktemp("node"), "n1")
    write_pcap(Path(env["PAR_CAPTURE_DIR"]) / f"pcap.{T0}", flow_records())
    with gunicorn("node", env) as node:
        yield node


@pytest.fixture(scope="module")
def secret_node(tmp_path_factory) -> Iterator[Server]:
    """A node that wants a PAR_NODE_SECRET the collector does not have."""
    env = node_env(tmp_path_factory.mktemp("node"), "n4")
    write_pcap(Path(env["PAR_CAPTURE_DIR"]) / f"pcap.{T0}", flow_records())
    with gunicorn("node", {**env, "PAR_NODE_SECRET": "only-the-node-knows-4d1e"}) as node:
        yield node


@pytest.fixture(scope="module")
def hung() -> Iterator[HungNode]:
    server = HungNode()
    yield server
    server.close()


@contextmanager
def live_collector(base: Path, nodes: dict[str, str], api: dict[str, list[str]], **extra_env: str):
    """A migrated database, the seed's config files imported, and gunicorn serving the collector."""
    with live_database(base) as url:
        env = {
            "DATABASE_URL": url,
            "PAR_DATA_DIR": str(base),
            "PAR_KEY_PEPPER": PEPPER,
            "PAR_NODE_READ_TIMEOUT": "2",
            "PAR_NODE_CONNECT_TIMEOUT": "2",
            **extra_env,
        }
        import_config(env, base, nodes, api)
        with gunicorn("collector", env) as collector:
            yield collector, url, env


@pytest.fixture(scope="module")
def live(tmp_path_factory, real_node, hung, secret_node) -> Iterator[tuple[Server, str, dict]]:
    nodes = {"1": real_node.url.removeprefix("http://"), "2": f"127.0.0.1:{free_port()}", "3": hung.address}
    nodes["4"] = secret_node.url.removeprefix("http://")
    with live_collector(
        tmp_path_factory.mktemp("collector"), nodes, {ADMIN: ["0"], ANALYST: ["1", "3"]}
    ) as live:
        yield live


def get(live, path: str, params: dict | None = None, key: str = ANALYST, **kwargs) -> requests.Response:
    collector, _, _ = live
    return requests.get(
        f"{collector.url}{path}", params={**(params or {}), "api_key": key}, timeout=30, **kwargs
    )


def test_a_real_nodes_pcap_passes_through_byte_for_byte(live, real_node):
    params = {**FLOW, **WINDOW}
    through = get(live, "/data.pcap", {**params, "node_id": "1"})
    direct = requests.get(f"{real_node.url}/data.pcap", params=params, timeout=30)
    assert through.status_code == direct.status_code == 200
    assert through.content == direct.content
    assert through.headers["Content-Type"] == "application/vnd.tcpdump.pcap"
    assert through.headers["Content-Disposition"] == direct.headers["Content-Disposition"]
    expected = pcap_bytes([(ts, frame) for ts, frame in flow_records() if is_wanted(frame)])
    assert through.content[24:] == expected[24:]  # every record, as captured


def test_the_download_is_in_the_request_log(live):
    _, url, _ = live
    params = {**FLOW, **WINDOW, "node_id": "1", "proto": "tcp"}
    before = log_count(url)
    body = get(live, "/data.pcap", params, headers={"X-Forwarded-For": "203.0.113.9"}).content
    logged = newest_log_row(
        url, "key_prefix, node, src_addr, dst_port, proto, status, bytes_sent, error, client_ip", before
    )
    assert logged == ("d5c3d52e", 1, "10.0.0.1", 80, 6, 200, len(body), "", "127.0.0.1")


def test_a_node_refusal_passes_through_with_its_status(live):
    response = get(
        live,
        "/data.pcap",
        {**FLOW, "start_time": "2001-01-01", "end_time": "2001-01-01 00:05", "node_id": "1"},
    )
    assert response.status_code == 404
    assert response.json() == {"error": "no capture data for that timeframe"}


def test_a_node_refusing_the_collector_is_a_502_naming_the_settings(live, secret_node):
    collector, _, _ = live
    refused = {"error": "the node refused this collector (check PAR_NODE_ALLOW and PAR_NODE_SECRET)"}
    for path, params in (("/nodes/4/status", {}), ("/data.pcap", {**FLOW, **WINDOW, "node_id": "4"})):
        response = get(live, path, params, key=ADMIN)
        assert (response.status_code, response.json()) == (502, refused), path
    assert "node 4 (127.0.0.1:" in collector.log() and "refused this collector" in collector.log()
    assert "missing node secret" in secret_node.log()


def test_node_commands_answer_with_the_nodes_own_answer(live):
    ping = get(live, "/nodes/1/ping")
    assert ping.status_code == 200 and ping.json()["role"] == "node"
    status = get(live, "/nodes/1/status")
    assert status.status_code == 200 and "capturedir" in status.json()
    assert any(route["path"] == "/data.pcap" for route in get(live, "/nodes/1/routes").json())


def test_dead_and_hung_nodes_live(live):
    dead = get(live, "/nodes/2/ping", key=ADMIN)
    assert (dead.status_code, dead.json()) == (502, {"error": "there was a problem requesting from the node"})
    started = time.monotonic()
    hung = get(live, "/data.pcap", {**FLOW, **WINDOW, "node_id": "3"})
    assert (hung.status_code, hung.json()) == (504, {"error": "there was a problem requesting from the node"})
    assert time.monotonic() - started < 10


def test_keys_and_refusals_under_gunicorn(live):
    assert get(live, "/ping", key="").status_code == 401
    assert get(live, "/data.pcap", {**FLOW, **WINDOW, "node_id": "2"}).status_code == 403
    keys = get(live, "/keys", key=ADMIN).json()
    assert keys["54b22f56"]["nodes"] == ["0"] and keys["d5c3d52e"]["nodes"] == ["1", "3"]


def test_a_key_made_by_createapikey_works_at_once(live):
    _, _, env = live
    key = manage(env, "createapikey", "--name", "fresh", "--nodes", "1").strip()
    assert get(live, "/nodes/list", key=key).json().keys() == {"1"}


def test_no_key_appears_in_the_server_logs(live, real_node):
    collector, _, _ = live
    get(live, "/data.pcap", {**FLOW, **WINDOW, "node_id": "1"})
    get(live, "/ping", key=ANALYST.replace("d5", "00"))
    get(live, "/keys")
    text = collector.log() + real_node.log()
    assert "/data.pcap" in text  # the access log is there
    for key in (ADMIN, ANALYST, ANALYST.replace("d5", "00")):
        assert key not in text


# ---- big answers: flat memory, and a node dying mid-stream

BIG_PACKETS = 150_000  # ~227 MB of full-size frames, all in the flow


@pytest.fixture(scope="module")
def big_node(tmp_path_factory) -> Iterator[Server]:
    env = node_env(tmp_path_factory.mktemp("bignode"), "n9")
    frames = [ether(tcp("10.0.0.1", 1234, "10.0.0.2", 80, bytes([n]) * 1460, seq=n)) for n in range(16)]
    start = (T0 + 1) * 10**9
    records = ((start + n * 100_000, frames[n % 16]) for n in range(BIG_PACKETS))
    write_pcap(Path(env["PAR_CAPTURE_DIR"]) / f"pcap.{T0}", records)
    with gunicorn("node", env) as node:
        yield node


@pytest.fixture(scope="module")
def big_live(tmp_path_factory, big_node) -> Iterator[tuple[Server, str, dict]]:
    base = tmp_path_factory.mktemp("bigcollector")
    nodes = {"9": big_node.url.removeprefix("http://")}
    with live_collector(base, nodes, {ANALYST: ["9"]}, PAR_NODE_READ_TIMEOUT="30") as live:
        yield live


@pytest.mark.slow
def test_a_big_answer_streams_through_in_flat_memory(big_live):
    collector, _, _ = big_live
    (worker,) = worker_pids(collector.process.pid)
    for _ in range(3):  # warm up: imports, connections
        get(big_live, "/data.pcap", {**FLOW, "start_time": str(T0), "end_time": str(T0 + 2), "node_id": "9"})
    before = peak_rss_kib(worker)
    received = 0
    started = time.monotonic()
    with get(big_live, "/data.pcap", {**FLOW, **WINDOW, "node_id": "9"}, stream=True) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_content(1 << 20):
            received += len(chunk)
    seconds = time.monotonic() - started
    growth_mib = (peak_rss_kib(worker) - before) / 1024
    print(
        f"streamed {received / 2**20:.0f} MiB in {seconds:.1f} s; collector peak RSS grew {growth_mib:.1f} MiB"
    )
    assert received == 24 + BIG_PACKETS * (16 + 1514)
    assert growth_mib < 32


@pytest.mark.slow
def test_a_node_dying_mid_stream_aborts_the_download(big_live, big_node):
    _, url, _ = big_live
    received, before = 0, log_count(url)
    with get(big_live, "/data.pcap", {**FLOW, **WINDOW, "node_id": "9"}, stream=True) as answer:
        assert answer.status_code == 200
        chunks = answer.iter_content(64 * 1024)
        with pytest.raises(requests.exceptions.RequestException):
            for chunk in chunks:
                received += len(chunk)
                if received >= 4 << 20 and received - len(chunk) < 4 << 20:
                    for pid in worker_pids(big_node.process.pid):
                        os.kill(pid, signal.SIGKILL)
    assert 4 << 20 <= received < 24 + BIG_PACKETS * (16 + 1514)
    status, sent, error = newest_log_row(url, "status, bytes_sent, error", before)
    assert status == 200 and error.startswith("node failed mid-stream")
    assert received <= sent < 24 + BIG_PACKETS * (16 + 1514)


def test_two_collectors_on_one_database_share_a_keys_rate(tmp_path, real_node):
    nodes = {"1": real_node.url.removeprefix("http://")}
    with live_collector(tmp_path, nodes, {ANALYST: ["1"]}, PAR_KEY_RATE="4") as (first, _url, env):  # noqa: SIM117 - the second needs the first's env
        with gunicorn("collector", env) as second:
            statuses = []
            for n in range(6):
                server = first if n % 2 == 0 else second
                answer = requests.get(f"{server.url}/ping", params={"api_key": ANALYST}, timeout=30)
                statuses.append(answer.status_code)
    # Four requests in the minute across both collectors, then refused wherever they land.
    assert statuses == [200, 200, 200, 200, 429, 429]


def established_from(port: int) -> set[int]:
    """The client ports of the TCP connections established to 127.0.0.1:``port`` (from /proc/net/tcp)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if local == f"0100007F:{port:04X}" and state == "01":
            ports.add(int(remote.split(":")[1], 16))
    return ports


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="the connections are read from /proc/net/tcp")
def test_a_real_node_is_asked_on_one_kept_connection_and_again_after_a_restart(tmp_path):
    env = node_env(tmp_path, "n1")
    write_pcap(Path(env["PAR_CAPTURE_DIR"]) / f"pcap.{T0}", flow_records())
    port = free_port()
    params = {**FLOW, **WINDOW, "node_id": "1"}
    (tmp_path / "collector").mkdir()
    with live_collector(tmp_path / "collector", {"1": f"127.0.0.1:{port}"}, {ADMIN: ["0"]}) as live:
        with gunicorn("node", env, port=port):
            assert get(live, "/data.pcap", params, key=ADMIN).status_code == 200
            kept = established_from(port)
            assert requests.head(
                f"{live[0].url}/data.pcap", params={**params, "api_key": ADMIN}, timeout=30
            ).ok
            assert get(live, "/flows", params, key=ADMIN).status_code == 200
            assert get(live, "/nodes/1/status", key=ADMIN).status_code == 200
            assert len(kept) == 1 and established_from(port) == kept
        with gunicorn("node", env, port=port):
            again = get(live, "/data.pcap", params, key=ADMIN)
    assert again.status_code == 200, again.text
    assert again.content[24:] == pcap_bytes([r for r in flow_records() if is_wanted(r[1])])[24:]
