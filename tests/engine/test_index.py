"""The flow index: built once per file, atomic, versioned, tied to its capture by content."""

from __future__ import annotations

import base64
import os
import shutil
import struct
from ipaddress import ip_network

import numpy as np
import pytest

import pcapgen as g
from engine.flow import address_range
from engine.formats import CaptureError
from engine.index import (
    INDEX_VERSION,
    FlowIndex,
    build_index,
    capture_span,
    community_id,
    index_is_current,
    index_path,
    open_index,
)
from engine.index import format as index_format
from tests.engine.conftest import T0, answer, pcap_records
from tests.engine.test_dissect import a16


@pytest.fixture
def capture(tmp_path):
    path = tmp_path / "pcap.1700000000"
    flows = g.mixed_flows(40, seed=3)
    g.write_pcap(path, g.mixed_traffic(T0, 2, flows, pps=500, seed=3))
    return path


def test_the_index_lies_beside_its_capture():
    assert str(index_path("/data/filed/2023/11/14/22/pcap.1700000000")).endswith("22/pcap.1700000000.idx")


def test_build_reports_what_it_indexed(capture):
    stats = build_index(capture)
    assert stats.packets == 1000
    assert stats.capture_bytes == capture.stat().st_size
    assert 0 < stats.flows <= 40
    assert T0 <= stats.first_ns <= stats.last_ns < T0 + 2 * 10**9
    assert stats.index_bytes == index_path(capture).stat().st_size
    assert index_is_current(capture)
    assert capture_span(capture) == (stats.first_ns, stats.last_ns)


def test_the_flow_table_counts_packets_bytes_and_times(tmp_path):
    path = tmp_path / "cap"
    frames = [g.ether(g.tcp("10.0.0.1", 1000, "10.0.0.2", 80, b"x" * n)) for n in (10, 20)]
    frames.append(g.ether(g.tcp("10.0.0.2", 80, "10.0.0.1", 1000, b"y" * 30)))
    g.write_pcap(path, [(T0 + 3000, frames[0]), (T0 + 1000, frames[1]), (T0 + 2000, frames[2])])
    build_index(path)
    [row] = FlowIndex(index_path(path)).flows
    assert (int(row["packets"]), int(row["bytes"])) == (3, sum(len(f) for f in frames))
    assert (int(row["first_ns"]), int(row["last_ns"])) == (T0 + 1000, T0 + 3000)  # not file order
    assert (int(row["a_port"]), int(row["b_port"]), int(row["proto"])) == (1000, 80, 6)


def test_community_id_matches_the_published_example():
    # corelight/community-id-spec: TCP 128.232.110.120:34855 -> 66.35.250.204:80
    found = community_id(a16("128.232.110.120"), 34855, a16("66.35.250.204"), 80, 6)
    assert found == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    assert community_id(a16("66.35.250.204"), 80, a16("128.232.110.120"), 34855, 6) == found


def test_any_subset_of_fields_finds_flows(capture):
    build_index(capture)
    index = FlowIndex(index_path(capture))
    some = g.mixed_flows(40, seed=3)[0]
    a, b = a16(some.a), a16(some.b)
    exact = index.find(a, some.a_port, b, some.b_port)
    assert len(exact) == 1
    assert set(exact) <= set(index.find(a))
    assert set(exact) <= set(index.find(b_port=some.b_port))
    assert set(exact) == set(index.find(b, some.b_port, a, some.a_port))  # either way round
    assert not len(index.find(a, some.a_port, b, some.b_port, protocols=(99,)))
    assert not len(index.find(a, some.a_port, b, some.b_port, end_ns=T0 - 1))


def test_an_index_built_elsewhere_stays_current_when_the_capture_moves_beside_it(capture, tmp_path):
    hour = tmp_path / "2023" / "11" / "14" / "22"
    hour.mkdir(parents=True)
    build_index(capture, out=index_path(hour / capture.name))
    assert not index_is_current(capture)
    shutil.move(capture, hour / capture.name)
    assert index_is_current(hour / capture.name)


def test_a_grown_capture_makes_its_index_outdated(capture):
    build_index(capture)
    with open(capture, "ab") as f:
        f.write(g.pcap_record(T0 + 5 * 10**9, g.ether(g.udp("10.0.0.1", 1, "10.0.0.2", 2))))
    assert not index_is_current(capture)
    assert capture_span(capture) is None


def test_a_capture_of_the_same_size_but_other_content_is_not_its_capture(capture):
    build_index(capture)
    data = bytearray(capture.read_bytes())
    data[-1] ^= 0xFF
    capture.write_bytes(bytes(data))
    assert not index_is_current(capture)


def test_an_index_of_another_version_is_not_current(capture):
    build_index(capture)
    path = index_path(capture)
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", INDEX_VERSION + 1)
    path.write_bytes(bytes(data))
    assert not index_is_current(capture)
    assert capture_span(capture) is None


@pytest.mark.parametrize("cut", [10, 200, 1])
def test_a_damaged_index_is_not_used(capture, cut):
    build_index(capture)
    path = index_path(capture)
    path.write_bytes(path.read_bytes()[:-cut])
    assert open_index(capture) is None


def test_a_capture_without_a_file_header_raises_and_writes_nothing(tmp_path):
    path = tmp_path / "pcap.1700000000"
    path.write_bytes(b"this is not a capture file" + bytes(2000))
    with pytest.raises(CaptureError, match="offset 0"):
        build_index(path)
    assert os.listdir(tmp_path) == ["pcap.1700000000"]


def test_a_capture_damaged_at_its_first_record_is_indexed_as_damaged_with_nothing_in_it(tmp_path):
    path = tmp_path / "pcap.1700000000"
    data = bytearray(g.pcap_bytes([(T0 + i, g.ether(g.udp("10.0.0.1", 1, "10.0.0.2", 2))) for i in range(5)]))
    data[24 + 8 : 24 + 12] = struct.pack("<I", 10**9)
    path.write_bytes(bytes(data) + bytes(2000))
    stats = build_index(path)
    assert stats.packets == 0 and stats.damage.endswith(
        "record length 1000000000 is impossible at byte offset 24"
    )
    index = open_index(path)
    assert (index.records, index.damaged_at, index.span) == (0, 24, None)


def test_a_last_record_cut_short_is_left_out(tmp_path):
    path = tmp_path / "pcap.1700000000"
    data = g.pcap_bytes(
        [(T0 + i * 1000, g.ether(g.udp("10.0.0.1", 1, "10.0.0.2", 2, b"z" * 50))) for i in range(5)]
    )
    path.write_bytes(data[:-20])
    assert build_index(path).packets == 4


def test_an_empty_capture_has_an_index_without_span(tmp_path):
    path = tmp_path / "pcap.1700000000"
    g.write_pcap(path, [])
    stats = build_index(path)
    assert (stats.packets, stats.flows, stats.first_ns) == (0, 0, None)
    assert index_is_current(path)
    assert capture_span(path) is None


def test_pcapng_is_indexed_with_its_interfaces(tmp_path):
    path = tmp_path / "two.pcapng"
    records = [
        (0, T0, g.ether(g.tcp("10.0.0.1", 1, "10.0.0.2", 2))),
        (1, T0 + 1, g.udp("10.0.0.3", 3, "10.0.0.4", 4)),
    ]
    g.write_pcapng(path, [g.Interface(1), g.Interface(101, 9)], records)
    stats = build_index(path)
    index = FlowIndex(index_path(path))
    assert (stats.packets, stats.flows, index.linktypes, index.pcapng) == (2, 2, [1, 101], True)
    assert len(index.meta_offsets) == 3  # section header, two interfaces


def test_offsets_take_a_varint_of_their_distance_per_packet(capture):
    built = build_index(capture)
    index = FlowIndex(index_path(capture))
    assert len(index.columns["offsets"]) < 2.5 * built.packets  # distances within a flow are short
    assert built.index_bytes < 0.05 * built.capture_bytes


@pytest.mark.slow
def test_offsets_reach_past_4_gib(tmp_path):
    """A sparse file: 16384 records of 256 KiB of zeros, then one real packet past 4 GiB."""
    path = tmp_path / "pcap.1700000000"
    big = 262144
    with open(path, "wb") as f:
        f.write(g.pcap_header())
        for n in range(16384):
            f.write(struct.pack("<IIII", T0 // 10**9, n, big, big))
            f.seek(big, os.SEEK_CUR)
        offset = f.tell()
        f.write(g.pcap_record(T0 + 10**9, g.ether(g.udp("10.0.0.1", 1, "10.0.0.2", 2, b"late"))))
    assert offset >= 1 << 32
    build_index(path)
    index = FlowIndex(index_path(path))
    flows = index.find(a16("10.0.0.1"), 1, a16("10.0.0.2"), 2)
    assert index.packet_offsets(flows).tolist() == [offset]


def test_the_header_format_is_documented():
    words = ("capture_size", "digest", "flow table", "address lookup", "port lookup", "Community ID lookup")
    for word in (*words, "packet offsets", "per packet", "per flow"):
        assert word in index_format.__doc__


# ---------------------------------------------------------------- version 2: lookups and compactness


def selection(**given):
    from engine.flow import Selection

    return Selection(start_ns=0, end_ns=2**63 - 1, **given)


def test_every_lookup_finds_what_a_look_at_every_row_finds(capture):
    build_index(capture)
    index = FlowIndex(index_path(capture))
    rows = index.flows
    everything = np.arange(index.n_flows)
    for some in g.mixed_flows(40, seed=3)[:8]:
        for network in (some.a, some.b, some.b + ("/24" if ":" not in some.b else "/120")):
            first, last = address_range(ip_network(network, strict=False))
            ends = [
                [int(h) << 64 | int(lo) for h, lo in zip(rows[e + "_hi"], rows[e + "_lo"], strict=True)]
                for e in "ab"
            ]
            wanted = [int.from_bytes(first, "big"), int.from_bytes(last, "big")]
            expected = set()
            for n in everything.tolist():
                if any(wanted[0] <= int(e[n]) <= wanted[1] for e in ends):
                    expected.add(n)
            assert set(index.address_flows(first, last).tolist()) == expected
        for port in (some.a_port, some.b_port):
            expected = {n for n in everything.tolist() if port in (rows["a_port"][n], rows["b_port"][n])}
            assert set(index.port_flows(port).tolist()) == expected


def test_the_community_id_column_finds_a_flow_by_its_community_id(capture):
    build_index(capture)
    index = FlowIndex(index_path(capture))
    rows = index.rows(np.arange(index.n_flows), digests=True)
    for n, row in enumerate(rows.tolist()):
        digest = row[-1]
        assert int(index.columns["cid"][n]) == int.from_bytes(digest[:2], "big")
        text = "1:" + base64.b64encode(digest).decode()
        assert n in index.candidates(selection(community_id=text)).tolist()


def test_a_selection_resolves_to_candidates_that_hold_every_match(capture):
    build_index(capture)
    index = FlowIndex(index_path(capture))
    rows = index.flows
    some = g.mixed_flows(40, seed=3)[5]
    for given in (
        {"src": ip_network(some.a)},
        {"dst": ip_network(some.b), "dst_port": some.b_port},
        {"src_port": some.a_port},
        {"proto": some.proto},
        {},
    ):
        wanted = selection(**given)
        found = set(index.candidates(wanted).tolist())
        for n, row in enumerate(rows.tolist()):
            a, b = row[0] << 64 | row[1], row[2] << 64 | row[3]
            a16_, b16_ = a.to_bytes(16, "big"), b.to_bytes(16, "big")
            if wanted.matches(a16_, row[8], b16_, row[9], row[10]):
                assert n in found


def test_the_index_knows_who_sent_first_and_what_a_selection_costs(tmp_path):
    path = tmp_path / "pcap.1700000000"
    frames = [g.ether(g.tcp("10.0.0.9", 443, "10.0.0.1", 5000, b"x" * 10))]  # the b end (by address) first
    frames += [g.ether(g.tcp("10.0.0.1", 5000, "10.0.0.9", 443, b"y" * 20))] * 2
    g.write_pcap(path, [(T0 + n * 1000, f) for n, f in enumerate(frames)])
    build_index(path)
    index = FlowIndex(index_path(path))
    [row] = index.flows
    assert bool(row["b_first"]) and (int(row["a_port"]), int(row["b_port"])) == (5000, 443)
    assert index.estimate(np.arange(1)) == (3, sum(len(f) for f in frames))


def test_a_version_1_index_is_scanned_around_until_rebuilt(capture):
    expected = answer([capture], flow_of(g.mixed_flows(40, seed=3)[0]))
    build_index(capture)
    path = index_path(capture)
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", 1)  # what the previous release wrote
    path.write_bytes(bytes(data))
    assert open_index(capture) is None and not index_is_current(capture)
    assert answer([capture], flow_of(g.mixed_flows(40, seed=3)[0])) == expected


def flow_of(f):
    from tests.engine.conftest import flow

    return flow(f.a, f.a_port, f.b, f.b_port)


def test_short_flows_cost_under_five_percent_of_their_capture(tmp_path):
    path = tmp_path / "pcap.1700000000"
    g.write_pcap(path, g.dns_traffic(T0, 60, 5000, seed=1))
    built = build_index(path)
    assert built.index_bytes < 0.05 * built.capture_bytes


def test_an_index_built_in_memory_is_the_one_written(capture):
    from engine.index import index_in_memory

    build_index(capture)
    written, in_memory = FlowIndex(index_path(capture)), index_in_memory(capture)
    assert written._map[:] == in_memory._map
    every = np.arange(written.n_flows)
    assert in_memory.packet_offsets(every).tolist() == written.packet_offsets(every).tolist()


def test_a_selection_is_confirmed_on_its_candidates_only(capture):
    build_index(capture)
    index = FlowIndex(index_path(capture))
    some = g.mixed_flows(40, seed=3)[5]
    seen = []

    def confirm(rows):
        seen.append(len(rows))
        return rows["b_port"] == some.b_port

    found = index.selected(selection(src=ip_network(some.a)), confirm)
    assert len(found) >= 1 and seen[0] < index.n_flows


def test_a_few_flow_rows_read_one_by_one_are_the_rows_read_as_a_table(capture):
    build_index(capture)
    index = FlowIndex(index_path(capture))
    assert index.n_v4 > 0 and index.n_flows > index.n_v4  # both families are read
    every = np.arange(index.n_flows)
    table = index.rows(every, digests=True)
    rng = np.random.default_rng(5)
    for _ in range(20):
        few = np.sort(rng.choice(every, size=int(rng.integers(1, 17)), replace=False))
        assert index.rows(few, digests=True).tolist() == table[few].tolist()
        assert index.rows(few).tolist() == index.rows(every)[few].tolist()


def test_a_flow_s_offsets_decoded_in_python_are_those_numpy_decodes(capture, monkeypatch):
    from engine.index import offsets

    build_index(capture)
    index = FlowIndex(index_path(capture))
    flows = range(index.n_flows)
    monkeypatch.setattr(offsets, "FEW_OFFSET_BYTES", 0)
    by_numpy = [index.packet_offsets(np.array([f])).tolist() for f in flows]
    monkeypatch.setattr(offsets, "FEW_OFFSET_BYTES", 1 << 30)
    by_python = [index.packet_offsets(np.array([f])).tolist() for f in flows]
    assert by_python == by_numpy
    assert sorted(sum(by_python, [])) == index.packet_offsets(np.arange(index.n_flows)).tolist()


def test_several_flows_offsets_decoded_by_their_groups_are_each_flow_s(capture):
    build_index(capture)
    index = FlowIndex(index_path(capture))
    each = [index.packet_offsets(np.array([f])).tolist() for f in range(index.n_flows)]
    rng = np.random.default_rng(7)
    for size in (5, 9, 17, 40, index.n_flows // 5):
        ids = np.sort(rng.choice(index.n_flows, size=size, replace=False))
        assert index.packet_offsets(ids).tolist() == sorted(sum((each[i] for i in ids.tolist()), []))


def test_a_few_candidates_checked_one_by_one_find_and_estimate_what_the_table_check_does(
    capture, monkeypatch
):
    from engine.index import lookup

    build_index(capture)
    index = FlowIndex(index_path(capture))
    questions = []
    for some in g.mixed_flows(40, seed=3)[:12]:
        a, b = a16(some.a), a16(some.b)
        questions += [
            (a, some.a_port, b, some.b_port, None),
            (b, some.b_port, a, some.a_port, (6,)),
            (a, None, None, some.b_port, (17, 132)),
            (None, some.a_port, b, None, None),
            (a, some.a_port + 1, b, some.b_port, None),
        ]

    def found() -> list[list[int]]:
        index._selections.clear()  # answers are kept: ask afresh
        return [index.find(*q[:4], protocols=q[4]).tolist() for q in questions]

    def estimates(answers: list[list[int]]) -> list[tuple[int, int]]:
        return [index.estimate(np.array(ids, dtype=np.int64)) for ids in answers]

    one_by_one = found()
    few_estimates = estimates(one_by_one)
    monkeypatch.setattr(lookup, "FEW_ROWS", 0)
    assert one_by_one == found()
    assert few_estimates == estimates(one_by_one)
    assert any(one_by_one) and not all(one_by_one)


@pytest.mark.parametrize("mapped", [True, False], ids=["a v4-mapped IPv6 end", "no v4-mapped end"])
def test_an_ipv4_query_finds_ipv6_packets_whose_address_is_v4_mapped(tmp_path, mapped):
    from engine.query import query_captures

    path = tmp_path / f"pcap.{T0 // 10**9}"
    v6_end = "::ffff:10.9.8.7" if mapped else "2001:db8::7"
    records = [
        (T0 + k * 10**6, g.ether(g.udp("10.9.8.7", 5353, "10.0.0.2", 53, b"v4 %d" % k))) for k in range(3)
    ]
    records += [
        (T0 + 5 * 10**6 + k, g.ether(g.udp(v6_end, 5353, "2001:db8::2", 53, b"v6"))) for k in range(2)
    ]
    records += [(T0 + 9 * 10**6, g.ether(g.udp("2001:db8::3", 1, "2001:db8::4", 2)))]
    g.write_pcap(path, records)
    q = selection(src=ip_network("10.9.8.7/32"))
    scanned = b"".join(query_captures([path], q))
    build_index(path)
    index = FlowIndex(index_path(path))
    assert index.n_flows > index.n_v4  # IPv6 flows are indexed
    indexed = b"".join(query_captures([path], q))
    assert indexed == scanned
    assert len(pcap_records(indexed)[1]) == (5 if mapped else 3)
