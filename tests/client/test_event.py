"""``par pcap --event FILE|-``: a Suricata or Zeek record as the query, against a real collector and node."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.client.conftest import CLIENT_DIR, T0, expected_pcap, par

ALERT = {
    "timestamp": f"{T0 + 2}",  # epoch seconds, as some pipelines rewrite it
    "event_type": "alert",
    "src_ip": "10.0.0.2",  # the reply that set the alert off: either direction is the flow
    "src_port": 80,
    "dest_ip": "10.0.0.1",
    "dest_port": 1234,
    "proto": "TCP",
    "alert": {"signature_id": 1, "signature": "test"},
    "flow": {"pkts_toserver": 200, "pkts_toclient": 100, "start": "2023-11-14T22:13:21.000000+0000"},
}
ZEEK = {"ts": T0 + 1, "uid": "C1", "id.orig_h": "10.0.0.1", "id.orig_p": 1234}
ZEEK |= {"id.resp_h": "10.0.0.2", "id.resp_p": 80, "proto": "tcp", "duration": 1.5}


def test_an_alert_file_downloads_its_flows_packets(as_analyst, tmp_path):
    (tmp_path / "alert.json").write_text(json.dumps(ALERT))
    result = par(
        "pcap", "--event", "alert.json", "--node-id", "1", "-o", "flow.pcap", env=as_analyst, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "flow.pcap").read_bytes()[24:] == expected_pcap()[24:]
    assert b"asked: node_id=1&src_addr=10.0.0.2&src_port=80&dst_addr=10.0.0.1" in result.stderr


def test_a_zeek_record_on_stdin_downloads_its_flows_packets(as_analyst, tmp_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / ".config-none"),
        "PYTHONPATH": str(CLIENT_DIR),
        **as_analyst,
    }
    result = subprocess.run(
        [sys.executable, "-m", "par_client", "pcap", "--event", "-", "node_id=1", "-o", "-", "-q"],
        input=json.dumps(ZEEK).encode() + b"\n",
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout[24:] == expected_pcap()[24:]


def test_the_window_can_be_overridden_and_a_record_without_flow_is_the_apis_message(as_analyst, tmp_path):
    (tmp_path / "alert.json").write_text(json.dumps(ALERT))
    late = ["--start-time", str(T0 + 3600), "--end-time", str(T0 + 3660)]
    result = par(
        "pcap", "--event", "alert.json", *late, "node_id=1", "-o", "late.pcap", env=as_analyst, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "late.pcap").read_bytes()) == 24  # nothing of the flow an hour later
    assert b"window 2023-11-14T23:13:20.000000000Z/2023-11-14T23:14:20.000000000Z" in result.stderr
    (tmp_path / "bare.json").write_text(json.dumps({"event_type": "alert", "timestamp": str(T0)}))
    result = par("pcap", "--event", "bare.json", "node_id=1", "-o", "x.pcap", env=as_analyst, cwd=tmp_path)
    assert result.returncode == 1
    assert b"the record names no flow" in result.stderr


def test_selectors_beside_an_event_are_a_usage_error(as_analyst, tmp_path):
    (tmp_path / "alert.json").write_text(json.dumps(ALERT))
    result = par(
        "pcap",
        "--event",
        "alert.json",
        "--src-addr",
        "10.0.0.1",
        "-o",
        "x.pcap",
        env=as_analyst,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert b"--event names the flow: drop src_addr" in result.stderr
    result = par("pcap", "--event", "missing.json", "-o", "x.pcap", env=as_analyst, cwd=tmp_path)
    assert result.returncode == 2 and b"cannot read missing.json" in result.stderr
