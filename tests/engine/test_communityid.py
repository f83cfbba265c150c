"""Community ID v1: the same IDs as the reference implementation (PyPI ``communityid``) and tshark."""

from __future__ import annotations

import ipaddress
import random
import shutil
import subprocess

import pytest

import pcapgen as g
from engine.dissection.communityid import community_id, flow_ports, parse_community_id
from engine.dissection.packet import dissect
from engine.selection.selectors import address16

communityid = pytest.importorskip("communityid", reason="the reference Community ID package is the oracle")


def reference(proto: int, src: str, sport: int | None, dst: str, dport: int | None) -> str:
    tpl = communityid.FlowTuple(proto, src, dst, sport, dport)
    return communityid.CommunityID(seed=0).calc(tpl)


def ours(proto: int, src: str, sport: int, dst: str, dport: int) -> str:
    return community_id(
        address16(ipaddress.ip_address(src)), sport, address16(ipaddress.ip_address(dst)), dport, proto
    )


def test_generated_flows_have_the_reference_ids_in_both_directions():
    flows = g.mixed_flows(400, seed=5, v6_share=0.5, sctp_share=0.1)
    assert {f.proto for f in flows} == {6, 17, 132}
    for f in flows:
        expected = reference(f.proto, f.a, f.a_port, f.b, f.b_port)
        assert ours(f.proto, f.a, f.a_port, f.b, f.b_port) == expected
        assert ours(f.proto, f.b, f.b_port, f.a, f.a_port) == expected


@pytest.mark.parametrize("v6", [False, True], ids=["icmp", "icmp6"])
def test_every_icmp_type_and_code_has_the_reference_id(v6):
    proto, a, b = (58, "2001:db8::1", "2001:db8::2") if v6 else (1, "192.0.2.1", "192.0.2.2")
    rng = random.Random(3)
    for icmp_type in range(256):
        for code in {0, 1, rng.randrange(256)}:
            for src, dst in ((a, b), (b, a)):
                assert ours(proto, src, icmp_type, dst, code) == reference(proto, src, icmp_type, dst, code)


@pytest.mark.parametrize(
    ("proto", "asking", "reply"), [(1, 8, 0), (1, 13, 14), (1, 10, 9), (58, 128, 129), (58, 135, 136)]
)
def test_a_request_and_its_reply_are_one_flow(proto, asking, reply):
    a, b = ("10.0.0.9", "10.0.0.1") if proto == 1 else ("fd00::9", "fd00::1")
    assert ours(proto, a, asking, b, 0) == ours(proto, b, reply, a, 0)
    assert flow_ports(proto, asking, 0) == (asking, reply, False)


def test_an_icmp_error_is_one_way():
    forward, back = ours(1, "10.0.0.1", 3, "10.0.0.2", 1), ours(1, "10.0.0.2", 3, "10.0.0.1", 1)
    assert forward != back
    assert flow_ports(1, 3, 1) == (3, 1, True)


def test_protocols_without_ports_hash_the_addresses_only():
    for proto in (0, 47, 50, 89, 255):
        assert ours(proto, "10.0.0.2", 0, "10.0.0.1", 0) == reference(
            proto, "10.0.0.2", None, "10.0.0.1", None
        )
        assert ours(proto, "10.0.0.2", 7, "10.0.0.1", 9) == reference(
            proto, "10.0.0.1", None, "10.0.0.2", None
        )


def test_equal_addresses_are_ordered_by_port():
    assert ours(6, "10.0.0.1", 9000, "10.0.0.1", 80) == reference(6, "10.0.0.1", 9000, "10.0.0.1", 80)
    assert ours(6, "::1", 80, "::1", 9000) == reference(6, "::1", 9000, "::1", 80)


def test_a_known_id_from_the_spec():
    # community-id-spec baseline: tcp 128.232.110.120:34855 -> 66.35.250.204:80
    assert ours(6, "128.232.110.120", 34855, "66.35.250.204", 80) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_the_text_form_is_read_back_exactly():
    text = ours(17, "10.0.0.1", 53, "10.0.0.2", 5353)
    assert len(parse_community_id(text)) == 20
    for bad in (
        "",
        "1:",
        "2:" + text[2:],
        text[:-1],
        text[2:],
        "1:" + "A" * 26 + "==",
        text + "=",
        "1: " + text[2:],
    ):
        with pytest.raises(ValueError):
            parse_community_id(bad)


def _icmp_fields(packet: bytes) -> tuple[int, int]:
    at = (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40
    return packet[at], packet[at + 1]


@pytest.mark.tools
def test_tshark_computes_the_same_ids(tmp_path):
    """tshark's Community ID dissector is a second, independent oracle."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: it is the oracle of this test")
    packets = [
        f.packet(forward) for f in g.mixed_flows(60, seed=8, v6_share=0.5) for forward in (True, False)
    ]
    echo = [g.icmp_echo("10.1.1.1", "10.2.2.2", 7, 1), g.icmp_echo("10.2.2.2", "10.1.1.1", 7, 1, reply=True)]
    echo += [g.icmp_echo("fd00::1", "fd00::2", 7, 1), g.icmp_echo("fd00::2", "fd00::1", 7, 1, reply=True)]
    errors = [
        g.icmp_error("192.0.2.254", packets[0]),
        g.icmp_error("2001:db8::fe", g.tcp("fd00::1", 1, "fd00::2", 2)),
    ]
    packets += echo + errors + [g.ip("10.0.0.1", "10.0.0.2", 47, b"\0" * 8)]
    path = tmp_path / "mix.pcap"
    g.write_pcap(path, [(1_700_000_000_000_000_000 + i * 1000, g.ether(p)) for i, p in enumerate(packets)])
    done = subprocess.run(
        ["tshark", "-r", str(path), "--enable-protocol", "communityid", "-T", "fields", "-e", "communityid"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    theirs = done.stdout.splitlines()
    assert len(theirs) == len(packets)
    for packet, expected in zip(packets, theirs, strict=True):
        f = dissect(1, g.ether(packet))
        assert f is not None
        sport, dport = _icmp_fields(packet) if f.proto in (1, 58) else (f.sport, f.dport)
        assert community_id(f.src, sport, f.dst, dport, f.proto) == expected
