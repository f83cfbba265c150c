"""The demo's traffic is real conversations: Wireshark (tshark) finds nothing wrong with them.

tshark is the oracle: its expert info (``-z expert``) must show no error and no warning, and its
TCP analysis no retransmission, duplicate ACK, lost segment or full window; the HTTP, DNS and
TLS dissectors must recognise what each conversation claims to be.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter

import pytest

from pcapgen import write_pcap
from pcapgen.sessions import session_traffic, tcp_session

TSHARK = shutil.which("tshark")
START_NS = 1_796_083_200 * 10**9
needs_tshark = pytest.mark.skipif(
    TSHARK is None, reason="tshark is not installed (Debian: apt-get install tshark)"
)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    records, flows = session_traffic(START_NS, 40, seed=3)
    path = tmp_path_factory.mktemp("sessions") / "sessions.pcap"
    write_pcap(path, records)
    return path, records, flows


def tshark(*args: str) -> str:
    result = subprocess.run([TSHARK, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_traffic_is_in_time_order_and_has_every_kind(traffic):
    _, records, flows = traffic
    assert [ts for ts, _ in records] == sorted(ts for ts, _ in records)
    kinds = Counter(flow.kind for flow in flows)
    assert kinds["http"] >= 5 and kinds["tls"] >= 5 and kinds["dns"] >= 10
    assert any(":" in flow.a for flow in flows) and any(flow.vlans for flow in flows)
    assert sum(flow.packets for flow in flows) == len(records)


@needs_tshark
def test_wireshark_expert_info_shows_no_error_and_no_warning(traffic):
    path, _, _ = traffic
    expert = tshark("-r", str(path), "-q", "-z", "expert")
    sections = dict(re.findall(r"^(Errors|Warnings|Notes|Chats) \((\d+)\)", expert, re.M))
    assert "Errors" not in sections and "Warnings" not in sections, expert
    assert "Chats" in sections, expert  # the check ran: handshakes are chats
    for noise in ("retransmission", "Duplicate ACK", "Previous segment", "ACKed segment", "Window"):
        assert noise.lower() not in expert.lower(), expert


@needs_tshark
def test_tcp_analysis_flags_nothing(traffic):
    path, _, _ = traffic
    assert tshark("-r", str(path), "-Y", "tcp.analysis.flags && !tcp.analysis.window_update") == ""


@needs_tshark
def test_each_conversation_is_what_it_claims(traffic):
    path, _, flows = traffic
    kinds = Counter(flow.kind for flow in flows)
    fields = tshark("-r", str(path), "-T", "fields", "-e", "frame.number", "-Y", "http.response.code == 200")
    responses = len(fields.split())
    assert responses >= kinds["http"]  # one or more pages per HTTP session
    hellos = tshark(
        "-r",
        str(path),
        "-T",
        "fields",
        "-e",
        "tls.handshake.extensions_server_name",
        "-Y",
        "tls.handshake.type == 1",
    )
    assert len(hellos.split()) == kinds["tls"]
    answers = tshark(
        "-r", str(path), "-T", "fields", "-e", "dns.a", "-e", "dns.aaaa", "-Y", "dns.flags.response == 1"
    )
    assert len(answers.split()) == kinds["dns"]


@needs_tshark
def test_a_session_opens_and_closes_as_tcp_does(tmp_path):
    records = tcp_session(
        "10.0.0.1", 40000, "10.0.0.2", 80, [(b"hello", b"x" * 100_000)], START_NS, 10_000_000
    )
    path = tmp_path / "one.pcap"
    write_pcap(path, records)
    flags = tshark("-r", str(path), "-T", "fields", "-e", "tcp.flags.str").split("\n")
    flags = [f.replace("\u00b7", "").strip() for f in flags if f]
    assert flags[:3] == ["S", "AS", "A"]
    assert flags[-3:] == ["AF", "AF", "A"]
    conv = tshark("-r", str(path), "-q", "-z", "conv,tcp")
    assert re.search(r"10\.0\.0\.1:40000\s+<->\s+10\.0\.0\.2:80", conv), conv
