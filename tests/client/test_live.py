"""The par command against a real collector and node under gunicorn: what an analyst types, what comes out."""

from __future__ import annotations

import os

import requests

from tests.client.conftest import FLOW, WINDOW, expected_pcap, par
from tests.collector.live import log_count, newest_log_row
from tests.servers import free_port


def terms(params: dict[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in params.items()]


def test_ping_names_the_collector_and_its_version(as_analyst):
    result = par("ping", env=as_analyst)
    assert result.returncode == 0, result.stderr
    assert b"collector" in result.stdout and b"(API " in result.stdout


def test_nodes_lists_the_nodes_the_key_may_query(live, as_analyst):
    result = par("nodes", env=as_analyst)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == f"1\t{live.node.url.removeprefix('http://')}"
    assert [line.split("\t")[0] for line in lines] == ["1", "2"]


def test_nodes_asks_one_node_for_its_status(as_analyst):
    result = par("nodes", "1", "ping", env=as_analyst)
    assert result.returncode == 0, result.stderr
    assert b'"role": "node"' in result.stdout


def test_a_downloaded_pcap_holds_the_flows_packets_byte_for_byte(live, as_analyst, tmp_path):
    args = ["--src-addr", FLOW["src_addr"], "--src_port", FLOW["src_port"]]
    args += ["--dst-addr", FLOW["dst_addr"], "--dst-port", FLOW["dst_port"]]
    args += ["--start-time", WINDOW["start_time"], "--end-time", WINDOW["end_time"], "--node-id", "1"]
    result = par("pcap", *args, "-o", "flow.pcap", env=as_analyst, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    body = (tmp_path / "flow.pcap").read_bytes()
    direct = requests.get(f"{live.node.url}/data.pcap", params={**FLOW, **WINDOW}, timeout=30)
    assert body == direct.content
    assert body[24:] == expected_pcap()[24:]  # every record of the flow, as captured
    assert b"300 packets" in result.stderr and f"{len(body)} bytes".encode() in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["flow.pcap"]  # no temporary file left


def test_dash_writes_the_pcap_to_stdout_for_a_pipe(as_analyst, tmp_path):
    result = par("pcap", *terms({**FLOW, **WINDOW, "node_id": "1"}), "-o", "-", "-q", env=as_analyst)
    assert result.returncode == 0, result.stderr
    assert result.stdout[24:] == expected_pcap()[24:]
    assert result.stderr == b""  # -q: nothing but the pcap


def test_a_pipe_gets_the_pcap_without_dash_o(as_analyst):
    result = par("pcap", *terms({**FLOW, **WINDOW, "node_id": "1"}), env=as_analyst)
    assert result.returncode == 0, result.stderr
    assert result.stdout[24:] == expected_pcap()[24:]


def test_the_download_is_logged_under_the_key(live, as_analyst, tmp_path):
    before = log_count(live.database_url)
    result = par(
        "pcap", *terms({**FLOW, **WINDOW, "node_id": "1"}), "-o", "x.pcap", env=as_analyst, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    prefix, status, size = newest_log_row(live.database_url, "key_prefix, status, bytes_sent", before)
    assert live.key.startswith(prefix) and status == 200
    assert size == (tmp_path / "x.pcap").stat().st_size


def test_a_bad_parameter_is_the_apis_message_and_exit_1(as_analyst, tmp_path):
    result = par(
        "pcap",
        *terms({**FLOW, **WINDOW, "dst_port": "99999", "node_id": "1"}),
        "-o",
        "x.pcap",
        env=as_analyst,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert b"par: invalid dst_port" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no file for a refused download


def test_an_unknown_key_is_refused_with_exit_1(live):
    result = par("ping", env={"PAR_URL": live.collector.url, "PAR_API_KEY": "par_" + "x" * 43})
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "par: unknown API key"


def test_a_node_without_a_grant_is_refused_with_exit_1(live):
    env = {"PAR_URL": live.collector.url, "PAR_API_KEY": live.other_key}
    result = par("pcap", *terms({**FLOW, **WINDOW, "node_id": "2"}), "-o", "-", env=env)
    assert result.returncode == 1
    assert b"may not query" in result.stderr


def test_a_node_that_cannot_be_reached_is_exit_3(as_analyst):
    result = par("pcap", *terms({**FLOW, **WINDOW, "node_id": "2"}), "-o", "-", env=as_analyst)
    assert result.returncode == 3
    assert b"there was a problem requesting from the node" in result.stderr


def test_a_collector_that_cannot_be_reached_is_exit_4(live):
    result = par("ping", env={"PAR_URL": f"http://127.0.0.1:{free_port()}", "PAR_API_KEY": live.key})
    assert result.returncode == 4
    assert b"par: cannot reach http://127.0.0.1:" in result.stderr


def test_no_key_is_a_usage_error_saying_where_to_put_one(live):
    result = par("ping", env={"PAR_URL": live.collector.url})
    assert result.returncode == 2
    assert b"no API key: set PAR_API_KEY" in result.stderr


def test_the_config_file_gives_url_key_and_default_node(live, tmp_path):
    config = tmp_path / "par.conf"
    config.write_text(
        f"# the SOC's collector\nurl = {live.collector.url}\napi_key = {live.key}\nnode_id = 1\n"
    )
    config.chmod(0o600)
    result = par("pcap", *terms({**FLOW, **WINDOW}), "-o", "-", "-q", env={"PAR_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert result.stdout[24:] == expected_pcap()[24:]


def test_a_config_file_others_can_read_is_refused(live, tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "par").mkdir(parents=True)
    config = home / ".config" / "par" / "config"
    config.write_text(f"url = {live.collector.url}\napi_key = {live.key}\n")
    config.chmod(0o644)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    result = par("ping", env=env)
    assert result.returncode == 2
    assert b"mode 0644" in result.stderr and b"chmod 600" in result.stderr
    config.chmod(0o600)
    assert par("ping", env=env).returncode == 0


def test_the_environment_wins_over_the_config_file(live, tmp_path):
    config = tmp_path / "par.conf"
    config.write_text(f"url = http://127.0.0.1:{free_port()}\napi_key = par_{'y' * 43}\n")
    os.chmod(config, 0o600)
    env = {"PAR_CONFIG": str(config), "PAR_URL": live.collector.url, "PAR_API_KEY": live.key}
    assert par("ping", env=env).returncode == 0
