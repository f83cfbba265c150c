"""How par shows each kind of answer, against a stand-in collector: flows, node failures, cuts, errors."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.client.conftest import CLIENT_DIR, expected_pcap, par
from tests.client.fake import FakeCollector

KEY = "par_" + "k" * 43
FLOWS = {
    "window": {"start": "2023-11-14T22:13:20Z", "end": "2023-11-14T22:14:20Z"},
    "flows": [
        {
            "node": "1",
            "proto": 6,
            "src_addr": "10.0.0.1",
            "src_port": 1234,
            "dst_addr": "10.0.0.2",
            "dst_port": 80,
            "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "first": "2023-11-14T22:13:21.000000Z",
            "last": "2023-11-14T22:13:22.495000Z",
            "packets": 300,
            "bytes": 51224,
        },
        {
            "node": "3",
            "proto": 17,
            "src_addr": "2001:db8::1",
            "src_port": 53,
            "dst_addr": "2001:db8::2",
            "dst_port": 5353,
            "community_id": "1:abc=",
            "first": "2023-11-14T22:13:30Z",
            "last": "2023-11-14T22:13:31Z",
            "packets": 2,
            "bytes": 180,
            "approximate": True,
        },
    ],
    "truncated": True,
    "failed": {"4": "timed out"},
}
PCAP = expected_pcap()


def answer(path: str, params: dict[str, str]):
    if path == "/flows" and params.get("output") == "csv":
        return 200, {"Content-Type": "text/csv"}, [b"node,proto\r\n", b"1,6\r\n"]
    if path == "/flows":
        return 200, {"Content-Type": "application/json"}, [json.dumps(FLOWS).encode()]
    if path == "/data.pcap" and params.get("src_port") == "cut":
        return 200, {"Content-Type": "application/vnd.tcpdump.pcap"}, [PCAP[:5000], None]
    if path == "/data.pcap" and params.get("src_port") == "slow":
        chunks: list = []
        for offset in range(0, len(PCAP), 4096):
            chunks += [PCAP[offset : offset + 4096], 0.05]
        return 200, {"X-PAR-Estimate-Bytes": str(len(PCAP) * 2)}, chunks
    if path == "/data.pcap" and params.get("src_port") == "html":
        return 502, {"Content-Type": "text/html"}, [b"<html><body>502 Bad Gateway</body></html>"]
    if path == "/data.pcap":
        headers = {"X-PAR-Nodes": "1,3", "X-PAR-Nodes-Failed": "4=timed out", "X-PAR-Window": "a/b"}
        return 200, {"Content-Type": "application/vnd.tcpdump.pcap", **headers}, [PCAP[:3000], PCAP[3000:]]
    return 404, {"Content-Type": "application/json"}, [b'{"error": "not found"}']


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCollector]:
    server = FakeCollector(answer)
    yield server
    server.close()


@pytest.fixture
def env(fake) -> dict[str, str]:
    return {"PAR_URL": fake.url, "PAR_API_KEY": KEY}


def test_flows_are_a_table_with_failed_nodes_and_truncation_on_stderr(fake, env):
    result = par(
        "flows", "--src-addr", "10.0.0.0/8", "--last", "15m", "--node-id", "all", "--sort", "-bytes", env=env
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == [
        "node",
        "proto",
        "source",
        "destination",
        "first",
        "last",
        "packets",
        "bytes",
        "community_id",
    ]
    assert lines[1].split() == [
        "1",
        "tcp",
        "10.0.0.1:1234",
        "10.0.0.2:80",
        "2023-11-14",
        "22:13:21.000",
        "2023-11-14",
        "22:13:22.495",
        "300",
        "51224",
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
    ]
    assert "[2001:db8::1]:53" in lines[2] and "~2" in lines[2]  # approximate counts are marked
    stderr = result.stderr.decode()
    assert "node 4 left out: timed out" in stderr and "more flows matched than the 2 listed" in stderr
    path, params, headers = fake.asked[-1]
    assert path == "/flows"
    assert params == {
        "src_addr": "10.0.0.0/8",
        "start_time": "-15m",
        "end_time": "now",
        "node_id": "all",
        "sort": "-bytes",
    }
    assert headers["Authorization"] == f"Api-Key {KEY}"  # never in the URL


def test_flows_json_is_the_apis_answer(env):
    result = par("flows", "start_time=-1h", "node_id=1", "--output", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == FLOWS


def test_flows_csv_is_passed_through_as_the_api_writes_it(fake, env):
    result = par("flows", "start_time=-1h", "--output", "csv", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"node,proto\r\n1,6\r\n"
    assert fake.asked[-1][1]["output"] == "csv"


def test_nodes_left_out_are_warned_about_and_strict_makes_it_exit_3(env):
    result = par("pcap", "src_port=1", "start_time=-1h", "-o", "-", env=env)
    assert result.returncode == 0 and result.stdout == PCAP
    assert b"nodes left out of the answer: 4=timed out" in result.stderr
    assert b"nodes 1,3, window a/b" in result.stderr
    strict = par("pcap", "src_port=1", "start_time=-1h", "-o", "-", "--strict", env=env)
    assert strict.returncode == 3 and strict.stdout == PCAP


def test_an_answer_cut_mid_stream_is_exit_5_and_leaves_no_file(env, tmp_path):
    result = par("pcap", "src_port=cut", "start_time=-1h", "-o", "cut.pcap", env=env, cwd=tmp_path)
    assert result.returncode == 5
    assert b"par: the answer broke off" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither cut.pcap nor its temporary file


def test_a_page_that_is_not_the_api_is_said_so_with_its_status(env):
    result = par("pcap", "src_port=html", "start_time=-1h", "-o", "-", env=env)
    assert result.returncode == 3
    assert b"HTTP 502 Bad Gateway (an HTML page, not the API" in result.stderr


def test_an_unknown_path_gives_the_apis_404_message(env):
    result = par("nodes", "7", "ping", env=env)
    assert result.returncode == 1
    assert result.stderr == b"par: not found\n"


def test_a_terminal_gets_a_progress_bar_on_long_downloads(env, tmp_path):
    controller, terminal = pty.openpty()
    full_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(CLIENT_DIR), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "par_client", "pcap", "src_port=slow", "start_time=-1h", "-o", "slow.pcap"],
        cwd=tmp_path,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # the terminal's other end closed: the command is done
            break
        if not data:
            break
        seen += data
    assert process.wait(timeout=60) == 0
    os.close(controller)
    assert (tmp_path / "slow.pcap").read_bytes() == PCAP
    assert b"\r[#" in seen and b"of ~" in seen and b"/s" in seen  # the bar, drawn over itself
    assert b"300 packets" in seen


def test_a_terminal_on_stdout_gets_no_pcap(env, tmp_path):
    controller, terminal = pty.openpty()
    full_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(CLIENT_DIR), **env}
    result = subprocess.run(
        [sys.executable, "-m", "par_client", "pcap", "src_port=1", "start_time=-1h"],
        env=full_env,
        stdout=terminal,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    os.close(terminal)
    os.close(controller)
    assert result.returncode == 2
    assert b"not writing a pcap to the terminal" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pcap", "--last", "1h", "--start-time", "-2h"], b"--last and start_time both"),
        (["pcap", "src_addr"], b"is not a NAME=VALUE term"),
        (["pcap", "--src-adr", "1.2.3.4"], b"unrecognized arguments"),
        (["frobnicate"], b"invalid choice"),
    ],
)
def test_usage_errors_are_exit_2(env, args, message):
    result = par(*args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
