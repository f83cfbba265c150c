"""The packet builders make packets that outside tools decode, with good checksums."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import pcapgen as g
from tests.engine.conftest import T0


@pytest.mark.tools
def test_tshark_decodes_the_builders_packets_with_good_checksums(tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: it is the oracle of this test")
    packets = [
        g.tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"hello", ip_options=g.ROUTER_ALERT),
        g.udp("2001:db8::1", 5000, "2001:db8::2", 6000, b"xyz", ext_headers=["hop", "dest"]),
        g.sctp("10.0.0.1", 2905, "10.0.0.2", 2905, b"abcde"),
        *g.fragment(g.udp("10.0.0.1", 999, "10.0.0.2", 7000, b"A" * 100, ident=7), 32),
    ]
    path = tmp_path / "built.pcap"
    g.write_pcap(path, [(T0 + i * 1000, g.ether(p, vlans=[(g.QINQ, 5), 6])) for i, p in enumerate(packets)])
    fields = ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "sctp.checksum.status"]
    out = subprocess.run(
        ["tshark", "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"]
        + ["-o", "udp.check_checksum:TRUE", "-o", "sctp.checksum:crc-32c", "-T", "fields"]
        + [x for f in fields for x in ("-e", f)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    statuses = [line.split("\t") for line in out.splitlines()]
    assert len(statuses) == len(packets)
    # 1 = good; tshark reassembles the fragments, so the UDP checksum shows on the last one
    assert [s for s in statuses if "0" in s] == []
    assert sum(s.count("1") for s in statuses) >= 7


def test_mixed_traffic_is_in_time_order_and_repeatable():
    first = list(g.mixed_traffic(T0, 1, 20, pps=300, seed=5))
    assert [t for t, _ in first] == sorted(t for t, _ in first)
    assert first == list(g.mixed_traffic(T0, 1, 20, pps=300, seed=5))
    assert len(first) == 300
