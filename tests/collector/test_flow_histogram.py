"""The collector adds the nodes' bytes over time slice by slice, and leaves it out when one cannot say."""

from __future__ import annotations

from types import SimpleNamespace

from collector.flows import NodeFlows, merge_flows

WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:00Z"}


def answer(node_id: int, histogram=None, failure=None) -> NodeFlows:
    body = {"window": WINDOW, "flows": [], "truncated": False, "failed": {}}
    if histogram is not None:
        body["histogram"] = histogram
    return NodeFlows(SimpleNamespace(id=node_id), body if failure is None else None, failure)


def test_the_nodes_histograms_are_added_slice_by_slice():
    merged = merge_flows([answer(1, [1, 2, 3]), answer(2, [10, 0, 5])], sort="first", limit=10)
    assert merged["histogram"] == [11, 2, 8]


def test_a_node_without_one_leaves_the_histogram_out():
    merged = merge_flows([answer(1, [1, 2, 3]), answer(2)], sort="first", limit=10)
    assert "histogram" not in merged


def test_a_failed_node_does_not_count_and_is_named():
    failed = answer(2, failure=SimpleNamespace(reason="timed out"))
    merged = merge_flows([answer(1, [1, 2, 3]), failed], sort="first", limit=10)
    assert merged["histogram"] == [1, 2, 3] and merged["failed"] == {"2": "timed out"}
