"""Limits over several nodes (real nodes under gunicorn): the merged answer as a whole honours them."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
import requests

from pcapgen import pcap_bytes
from tests.collector.test_live import FLOW, live_collector
from tests.collector.test_multinode import ADMIN, NODE1, NODE2, WINDOW, sensors, union  # noqa: F401 (fixture)
from tests.servers import Server

pytestmark = pytest.mark.slow

WHOLE = pcap_bytes(union(NODE1, NODE2))


def record_ends(data: bytes) -> list[int]:
    """The clean cut points of a classic pcap: its header's end, then each record's."""
    ends, at = [24], 24
    while at < len(data):
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
        ends.append(at)
    return ends


ENDS = record_ends(WHOLE)


def estimate(server: Server) -> tuple[int, int]:
    answer = requests.head(f"{server.url}/data.pcap", params={**FLOW, **WINDOW}, timeout=30)
    return int(answer.headers["X-PAR-Estimate-Packets"]), int(answer.headers["X-PAR-Estimate-Bytes"])


@pytest.fixture(scope="module")
def site(tmp_path_factory, sensors) -> Iterator[tuple[Server, tuple[int, int], tuple[int, int]]]:  # noqa: F811
    """A collector whose PAR_MAX_ANSWER_BYTES lies between the larger node's estimate and their sum."""
    one, two = estimate(sensors["1"]), estimate(sensors["2"])
    maximum = max(one[1], two[1]) + 1
    assert maximum < one[1] + two[1]
    nodes = {n: sensors[n].url.removeprefix("http://") for n in ("1", "2")}
    base = tmp_path_factory.mktemp("limits")
    with live_collector(base, nodes, {ADMIN: ["0"]}, PAR_MAX_ANSWER_BYTES=str(maximum)) as (collector, _, _):
        yield collector, one, two


def cut_at(size: int) -> bytes:
    """The merged answer ended before ``size`` bytes are exceeded, at a record boundary."""
    return WHOLE[: max(end for end in ENDS if end <= size)]


def maximum(site) -> int:
    """The collector's PAR_MAX_ANSWER_BYTES: no answer, whatever its limit_bytes, is longer."""
    _, one, two = site
    return max(one[1], two[1]) + 1


def get(site, params: dict, method: str = "GET") -> requests.Response:
    collector, _, _ = site
    query = {**FLOW, **WINDOW, "node_id": "1,2", "api_key": ADMIN, **params}
    return requests.request(method, f"{collector.url}/data.pcap", params=query, timeout=30)


@pytest.mark.parametrize("count", [1, 7, 250, len(ENDS) - 1, 100_000])
def test_limit_packets_holds_for_the_merged_answer_not_per_node(site, count):
    answer = get(site, {"limit_packets": str(count), "limit_bytes": str(10**9)})
    assert answer.status_code == 200, answer.text
    expected = WHOLE[: ENDS[min(count, len(ENDS) - 1)]]
    assert answer.content == cut_at(min(len(expected), maximum(site)))


@pytest.mark.parametrize("cut", [24, 25, ENDS[1], ENDS[1] + 1, ENDS[120] - 1, ENDS[300], len(WHOLE)])
def test_limit_bytes_ends_the_merged_answer_at_a_record_boundary_in_time_order(site, cut):
    answer = get(site, {"limit_bytes": str(cut)})
    assert answer.status_code == 200, answer.text
    assert answer.content == cut_at(min(cut, maximum(site)))
    assert answer.headers["X-PAR-Nodes"] == "1,2"


def test_the_summed_estimate_over_the_maximum_is_a_413_before_any_byte_get_and_head(site):
    _, one, two = site
    for method in ("GET", "HEAD"):
        answer = get(site, {}, method)
        assert answer.status_code == 413, method
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["X-PAR-Window"]
    message = get(site, {}).json()["error"]
    assert f"up to {one[1] + two[1]} bytes ({one[0] + two[0]} packets) estimated" in message
    assert "limit_bytes" in message


def test_under_the_maximum_or_with_limit_bytes_the_summed_estimate_is_reported(site):
    _, one, two = site
    alone = get(site, {"node_id": "1"})
    assert alone.status_code == 200 and alone.content == pcap_bytes(NODE1)
    limited = get(site, {"limit_bytes": str(10**9)})
    head = get(site, {"limit_bytes": str(10**9)}, "HEAD")
    assert limited.status_code == head.status_code == 200
    # limit_bytes over PAR_MAX_ANSWER_BYTES does not lift it: the answer, and its estimate, end there.
    assert limited.content == cut_at(maximum(site))
    for answer in (limited, head):
        assert answer.headers["X-PAR-Estimate-Packets"] == str(one[0] + two[0])
        assert answer.headers["X-PAR-Estimate-Bytes"] == str(maximum(site))
