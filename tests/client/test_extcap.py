"""``par extcap``: the collector as a capture source of the real tshark, in a HOME of its own."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import requests
from par_client.extcap import parse_args

from tests.client.conftest import FLOW, WINDOW, par

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


@pytest.fixture
def home(live, tmp_path) -> Path:
    """A HOME with par's config file (mode 600) and the extcap installed from it."""
    config = tmp_path / ".config" / "par" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(f"url = {live.collector.url}\napi_key = {live.key}\n")
    config.chmod(0o600)
    result = par(
        "extcap", "install", env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    )
    assert result.returncode == 0, result.stderr
    return tmp_path


def tshark(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    return subprocess.run(["tshark", *args], env=env, capture_output=True, timeout=timeout, cwd=home)


def test_install_writes_a_launcher_holding_no_key(live, home):
    launcher = home / ".config" / "wireshark" / "extcap" / "par"
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o700
    assert live.key not in launcher.read_text()
    assert str(home / ".config" / "par" / "config") in launcher.read_text()


def test_tshark_lists_each_node_the_key_may_query_and_all(home):
    result = tshark(home, "-D")
    assert result.returncode == 0, result.stderr
    names = [line.split(". ", 1)[1].split(" ")[0] for line in result.stdout.decode().splitlines()]
    assert [name for name in names if name.startswith("par-")] == ["par-1", "par-2", "par-all"]


def test_a_capture_from_a_node_is_the_answer_of_data_pcap(live, home):
    options = {"starttime": WINDOW["start_time"], "endtime": WINDOW["end_time"]}
    options |= {"srcaddr": FLOW["src_addr"], "dstport": FLOW["dst_port"]}
    prefs = [arg for name, value in options.items() for arg in ("-o", f"extcap.par_1.{name}:{value}")]
    result = tshark(home, "-i", "par-1", *prefs, "-F", "pcap", "-w", "capture.pcap")
    assert result.returncode == 0, result.stderr
    params = {"node_id": "1", **WINDOW, "src_addr": FLOW["src_addr"], "dst_port": FLOW["dst_port"]}
    answer = requests.get(
        f"{live.collector.url}/data.pcap", params=params, headers={"X-Api-Key": live.key}, timeout=30
    )
    assert answer.status_code == 200
    captured = (home / "capture.pcap").read_bytes()
    assert len(answer.content) > 10_000
    assert captured[24:] == answer.content[24:]  # every record, byte for byte


def test_the_default_window_is_the_last_fifteen_minutes_and_a_refusal_is_shown(home):
    # The flow is from 2023: the last 15 minutes hold none of it; a bad option is the API's 400.
    result = tshark(home, "-i", "par-1", "-o", "extcap.par_1.srcaddr:not-an-address", "-w", "x.pcapng")
    assert result.returncode != 0
    assert b"invalid src_addr" in result.stderr


def test_uninstall_removes_the_launcher(home):
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    assert par("extcap", "uninstall", env=env).returncode == 0
    assert not (home / ".config" / "wireshark" / "extcap" / "par").exists()
    assert b"par-1" not in tshark(home, "-D").stdout


def test_install_refuses_a_config_without_key(tmp_path):
    config = tmp_path / ".config" / "par" / "config"
    config.parent.mkdir(parents=True)
    config.write_text("url = http://127.0.0.1:1\n")
    config.chmod(0o600)
    result = par(
        "extcap", "install", env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    )
    assert result.returncode == 2
    assert b"put api_key there" in result.stderr


def test_a_value_beginning_with_a_dash_is_the_options_value():
    argv = ["--capture", "--extcap-interface", "par-all", "--fifo", "/tmp/f", "--start-time", "-15m"]
    argv += ["--end-time=-5m", "--src-addr", "", "--extcap-capture-filter", "-"]
    flags, extcap, params = parse_args(argv)
    assert flags == {"--capture"}
    assert extcap == {"--extcap-interface": "par-all", "--fifo": "/tmp/f", "--extcap-capture-filter": "-"}
    assert params == {"start_time": "-15m", "end_time": "-5m"}  # an empty option asks nothing
