"""Bytes over time of every flow matched (the page's timeline), from the flow tables, not the rows listed."""

from __future__ import annotations

import numpy as np

from engine.flows.listing import HISTOGRAM_BINS, bytes_over_time


def test_each_flows_bytes_are_spread_over_its_time_and_add_up():
    first = np.array([0, 50, 100, 40])
    last = np.array([0, 59, 100, 400])  # the last flow goes on past the window: its part in it counts
    nbytes = np.array([10, 600, 7, 60])
    bins = bytes_over_time(first, last, nbytes, 0, 100)
    assert len(bins) == HISTOGRAM_BINS
    assert sum(bins) == 677
    assert bins[0] == 10  # one instant at the start: whole in the first slice
    assert bins[-1] >= 7  # one instant at the end: whole in the last slice
    assert sum(bins[30:36]) >= 600  # 50..59 spread over the slices it spans


def test_no_flow_no_bytes():
    empty = np.zeros(0, dtype=np.int64)
    assert bytes_over_time(empty, empty, empty, 0, 10**9) == [0] * HISTOGRAM_BINS
