"""The /flows answer written from the engine's columns: the very bytes json.dumps and csv write from the rows."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import pcapgen as g
from api.flowlisting import columns_csv, flow_dict, flows_answer, flows_csv, flows_json
from api.times import format_iso, format_iso_many
from engine.flows.listing import list_flows
from engine.index import build_index
from engine.selection.selectors import Selection

T0 = 1_700_000_000 * 10**9
S = 10**9


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Two minutes of mixed traffic (IPv4 and IPv6, VLANs, TCP/UDP/SCTP) and ICMP both ways, indexed."""
    folder = tmp_path_factory.mktemp("listing")
    records = list(g.mixed_traffic(T0, 120, 300, pps=50, seed=4))
    icmp = [
        g.icmp_echo("10.9.0.2", "10.9.0.1", 7, 1),
        g.icmp_echo("10.9.0.1", "10.9.0.2", 7, 1, reply=True),
        g.icmp(("192.0.2.9"), "10.9.0.1", 3, 1),
        g.icmp_echo("fd00::2", "fd00::1", 3, 1),
    ]
    records += [(T0 + (k + 1) * 20 * S + 1, g.ether(p)) for k, p in enumerate(icmp)]
    files = []
    for minute in range(2):
        path = folder / f"pcap.{(T0 + minute * 60 * S) // S}"
        g.write_pcap(path, sorted(r for r in records if minute * 60 * S <= r[0] - T0 < (minute + 1) * 60 * S))
        build_index(path)
        files.append(path)
    return files


WINDOWS = [(T0, T0 + 120 * S), (T0 + 30 * S, T0 + 90 * S + 123)]  # the second cuts flows: approximate rows


@pytest.mark.parametrize("window", WINDOWS, ids=["whole", "cut"])
@pytest.mark.parametrize("sort", ["first", "-bytes"])
@pytest.mark.parametrize("limit", [100_000, 7])
@pytest.mark.parametrize("node", [None, "3", 'x%s,"y'])
def test_the_answer_from_columns_is_byte_for_byte_the_answer_from_rows(capture, window, sort, limit, node):
    listing = list_flows(capture, Selection(*window), sort=sort, limit=limit)
    answer = flows_answer(*window, listing, node)
    assert answer["flows"] == [flow_dict(row, node) for row in listing.rows]
    assert flows_json(*window, listing, node) == json.dumps(answer).encode()
    assert columns_csv(listing.columns, node) == flows_csv(answer["flows"])
    if window == WINDOWS[1] and limit > 7:
        assert any(row.get("approximate") for row in answer["flows"])
        assert {row["proto"] for row in answer["flows"]} >= {1, 6, 17, 58}


def test_an_empty_listing_is_written_alike():
    listing = list_flows([], Selection(T0, T0 + S))
    assert flows_json(T0, T0 + S, listing) == json.dumps(flows_answer(T0, T0 + S, listing)).encode()
    assert columns_csv(listing.columns) == flows_csv([])


def test_many_times_are_written_as_one_at_a_time():
    rng = random.Random(3)
    values = [rng.randrange(-(2**63), 2**63) for _ in range(20_000)]
    values += [0, -1, 1, -(2**63), 2**63 - 1, T0, T0 + 999_999_999]
    assert format_iso_many(values) == [format_iso(v) for v in values]
    assert format_iso_many(np.array(values[:10], dtype=np.int64)) == [format_iso(v) for v in values[:10]]
