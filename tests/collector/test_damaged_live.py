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
