"""Selections: which flows a set of optional selectors names, either direction."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from engine.selection.selectors import FlowQuery, Selection, address16, address_range

A, B, C = (address16(ip_address(x)) for x in ("10.1.2.3", "192.0.2.7", "10.9.9.9"))
V6 = address16(ip_address("2001:db8::5"))


def sel(**given) -> Selection:
    return Selection(0, 10, **given)


@pytest.mark.parametrize(
    ("given", "flow", "expected"),
    [
        ({}, (A, 1, B, 2, 47), True),  # nothing given: every flow, any protocol
        ({"src": "10.1.2.3"}, (A, 1, B, 2, 1), True),  # a host at either end
        ({"src": "10.1.2.3"}, (B, 2, A, 1, 6), True),
        ({"dst": "10.1.2.3"}, (B, 2, A, 1, 6), True),
        ({"src": "10.1.2.3"}, (C, 1, B, 2, 6), False),
        ({"src": "10.1.0.0/16"}, (B, 2, A, 1, 6), True),  # a network
        ({"src": "10.1.0.0/16", "dst": "10.0.0.0/8"}, (C, 5, A, 1, 6), True),  # both ends in 10/8
        ({"src": "10.1.0.0/16", "dst": "192.0.2.0/24"}, (C, 5, B, 1, 6), False),
        ({"src": "2001:db8::/32"}, (V6, 5, V6, 1, 6), True),
        ({"src": "2001:db8::/32"}, (A, 5, B, 1, 6), False),
        ({"src": "10.1.2.3", "dst_port": 443}, (A, 50000, B, 443, 6), True),  # whoever sent first
        ({"src": "10.1.2.3", "dst_port": 443}, (B, 443, A, 50000, 6), True),
        ({"src": "10.1.2.3", "dst_port": 443}, (A, 443, B, 50000, 6), False),  # A's own port 443
        ({"dst_port": 443}, (A, 443, B, 50000, 17), True),
        ({"dst_port": 443}, (A, 443, B, 50000, 1), False),  # a port: TCP, UDP or SCTP unless proto
        ({"dst_port": 443, "proto": 1}, (A, 443, B, 50000, 1), True),
        ({"proto": 1}, (A, 0, B, 0, 1), True),
        ({"proto": 1}, (A, 0, B, 0, 58), False),
        ({"src_port": 1, "dst_port": 2}, (A, 2, B, 1, 132), True),
        ({"src_port": 1, "dst_port": 1}, (A, 2, B, 1, 6), False),  # both ends must have port 1
    ],
)
def test_a_flow_matches_when_one_end_has_every_src_and_the_other_every_dst(given, flow, expected):
    assert sel(**given).matches(*flow) is expected


def test_an_address_is_a_single_host_network():
    s = sel(src=ip_address("10.1.2.3"), dst=ip_network("2001:db8::/126"))
    assert s.src == ip_network("10.1.2.3/32")
    assert s.dst_range == (address16(ip_address("2001:db8::")), address16(ip_address("2001:db8::3")))
    assert address_range(ip_network("10.0.0.0/8"))[1] == address16(ip_address("10.255.255.255"))


def test_protocols_follow_the_ports():
    assert sel().protocols is None
    assert sel(src_port=1).protocols == (6, 17, 132)
    assert sel(proto=58, src_port=1).protocols == (58,)
    assert sel().any_flow and not sel(proto=6).any_flow


def test_the_seeds_flow_query_is_an_exact_selection():
    q = FlowQuery(ip_address("10.1.2.3"), 1, ip_address("192.0.2.7"), 2, 0, 10)
    assert isinstance(q, Selection) and q.exact_flow
    assert (q.a, q.a_port, q.b, q.b_port, q.proto) == (
        ip_address("10.1.2.3"),
        1,
        ip_address("192.0.2.7"),
        2,
        None,
    )
    assert q.matches(B, 2, A, 1, 17) and not q.matches(A, 2, B, 1, 6)
    assert q == FlowQuery(ip_address("10.1.2.3"), 1, ip_address("192.0.2.7"), 2, 0, 10)


def test_endpoints_match_either_way_ignoring_ports():
    s = sel(src="10.1.0.0/16", dst_port=80)
    assert s.endpoints_match(B, A) and s.endpoints_match(A, B) and not s.endpoints_match(B, C)
