"""Damaged capture data named by a real node passes through the collector (both under gunicorn)."""

from __future__ import annotations

import pytest
import requests

from tests.collector.test_live import ANALYST, live_collector
from tests.node.test_damaged_http import DAMAGED, QUERY, answer_times, damaged_node_env, expected_times
from tests.servers import gunicorn

pytestmark = pytest.mark.slow


def test_the_damaged_files_a_node_names_reach_the_client_through_the_collector(tmp_path):
    with gunicorn("node", damaged_node_env(tmp_path / "node")) as node:
        nodes = {"1": node.url.removeprefix("http://")}
        (tmp_path / "collector").mkdir()
        with live_collector(tmp_path / "collector", nodes, {ANALYST: ["1"]}) as (collector, _, _):
            params = {**QUERY, "node_id": "1", "api_key": ANALYST}
            answer = requests.get(f"{collector.url}/data.pcap", params, timeout=30)
            direct = requests.get(f"{node.url}/data.pcap", QUERY, timeout=30)
    assert answer.status_code == 200
    assert answer.content == direct.content and answer_times(answer.content) == expected_times()
    assert answer.headers["X-PAR-Damaged"] == direct.headers["X-PAR-Damaged"]
    assert sorted(answer.headers["X-PAR-Damaged"].split(", ")) == sorted(DAMAGED)


def test_flows_and_head_name_the_damaged_files_through_the_collector_prefixed_when_merged(tmp_path):
    with gunicorn("node", damaged_node_env(tmp_path / "node")) as node:
        address = node.url.removeprefix("http://")
        (tmp_path / "collector").mkdir()
        nodes = {"1": address, "2": address}  # one sensor known twice: a merge of two answers
        with live_collector(tmp_path / "collector", nodes, {ANALYST: ["1", "2"]}) as (collector, _, _):
            one = {**QUERY, "node_id": "1", "api_key": ANALYST}
            flows = requests.get(f"{collector.url}/flows", one, timeout=30)
            direct = requests.get(f"{node.url}/flows", QUERY, timeout=30)
            head = requests.head(f"{collector.url}/data.pcap", params=one, timeout=30)
            merged = requests.get(f"{collector.url}/flows", {**one, "node_id": "1,2"}, timeout=30)
    names = direct.headers["X-PAR-Damaged"]
    assert sorted(names.split(", ")) == sorted(DAMAGED)
    assert flows.status_code == head.status_code == merged.status_code == 200
    assert flows.headers["X-PAR-Damaged"] == head.headers["X-PAR-Damaged"] == names
    assert merged.headers["X-PAR-Damaged"] == f"1={names}, 2={names}"
