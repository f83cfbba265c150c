"""Fragments belong to their datagram's flow whatever order they arrive in, indexed or scanned alike."""

from __future__ import annotations

import pytest

import pcapgen as g
from tests.engine.conftest import T0, flow, fragment6, pcap_records
from tests.engine.test_query import both_ways

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
A6, B6 = "2001:db8::1", "2001:db8::2"


def write(path, frames) -> None:
    g.write_pcap(path, [(T0 + i * 1000, g.ether(f)) for i, f in enumerate(frames)])


def frames_of(answer: bytes) -> list[bytes]:
    return [frame[14:] for *_, frame in pcap_records(answer)[1]]


def same_both_ways(path, q) -> list[bytes]:
    """The IP packets of the answer, after checking the indexed and the scanned answers are equal."""
    indexed = both_ways(True, [path], q)
    assert indexed == both_ways(False, [path], q)
    return frames_of(indexed)


def reversed_v4(ident: int = 9) -> list[bytes]:
    pieces = g.fragment(g.udp(A, 5000, B, 53, b"Q" * 100, ident=ident), 32)
    assert len(pieces) == 4
    return pieces[::-1]


def reversed_v6() -> list[bytes]:
    pieces = fragment6(g.udp(A6, 5000, B6, 53, b"Q" * 100), 32, ident=0x1234)
    assert len(pieces) == 4
    return pieces[::-1]


@pytest.mark.tools
@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
@pytest.mark.parametrize("version", [4, 6])
def test_fragments_sent_last_first_are_all_answered_like_tcpdump(tmp_path, tcpdump, indexed, version):
    """tcpdump is the oracle: `host A and host B` selects every fragment; only this datagram is between."""
    path = tmp_path / "pcap.1700000000"
    pieces, a, b = (reversed_v4(), A, B) if version == 4 else (reversed_v6(), A6, B6)
    noise = [g.udp(A, 5000, C, 53, b"n"), *reversed(g.fragment(g.udp(C, 1, A, 2, b"m" * 64, ident=9), 32))]
    write(path, [noise[0], *pieces[:2], *noise[1:], *pieces[2:]])
    ours = both_ways(indexed, [path], flow(a, 5000, b, 53))
    assert frames_of(ours) == [pieces[0], pieces[1], pieces[2], pieces[3]]
    assert pcap_records(ours) == pcap_records(tcpdump(path, f"host {a} and host {b}"))


def test_reversed_fragments_answer_the_same_indexed_or_scanned(tmp_path):
    for pieces, a, b in ((reversed_v4(), A, B), (reversed_v6(), A6, B6)):
        path = tmp_path / f"pcap.{1700000000 + len(a)}"
        write(path, pieces)
        assert same_both_ways(path, flow(a, 5000, b, 53)) == pieces
        assert same_both_ways(path, flow(b, 53, a, 5000)) == pieces
        assert same_both_ways(path, flow(a, 5001, b, 53)) == []


def test_interleaved_datagrams_with_one_id_in_both_directions_stay_apart(tmp_path):
    path = tmp_path / "pcap.1700000000"
    there = g.fragment(g.udp(A, 5000, B, 53, b"T" * 100, ident=7), 32)[::-1]
    back = g.fragment(g.udp(B, 80, A, 6000, b"B" * 100, ident=7), 32)[::-1]
    write(path, [piece for pair in zip(there, back, strict=True) for piece in pair])
    assert same_both_ways(path, flow(A, 5000, B, 53)) == there
    assert same_both_ways(path, flow(A, 6000, B, 80)) == back


def test_a_later_fragment_takes_the_latest_first_fragment_before_it_when_an_id_is_reused(tmp_path):
    """The rule for a reused id: the latest first fragment before it, else the earliest one after it."""
    path = tmp_path / "pcap.1700000000"
    one = g.fragment(g.udp(A, 5000, B, 53, b"1" * 60, ident=7), 32)
    two = g.fragment(g.udp(A, 6000, B, 53, b"2" * 60, ident=7), 32)
    write(path, [one[1], one[0], two[1], two[0]])
    assert same_both_ways(path, flow(A, 5000, B, 53)) == [one[1], one[0], two[1]]
    assert same_both_ways(path, flow(A, 6000, B, 53)) == [two[0]]


def test_a_fragment_whose_first_fragment_is_not_in_the_file_is_left_out(tmp_path):
    path = tmp_path / "pcap.1700000000"
    orphan = g.fragment(g.udp(A, 5000, B, 53, b"O" * 100, ident=8), 32)[2]
    orphan6 = fragment6(g.udp(A6, 5000, B6, 53, b"O" * 100), 32, ident=8)[1]
    pieces = reversed_v4()
    write(path, [orphan, orphan6, *pieces, orphan])
    assert same_both_ways(path, flow(A, 5000, B, 53)) == pieces
    assert same_both_ways(path, flow(A6, 5000, B6, 53)) == []


def test_a_fragment_before_its_first_fragment_is_answered_only_inside_the_window(tmp_path):
    path = tmp_path / "pcap.1700000000"
    pieces = reversed_v4()
    write(path, pieces)
    window = flow(A, 5000, B, 53, start=T0 + 1000, end=T0 + 2000)
    assert same_both_ways(path, window) == pieces[1:3]
