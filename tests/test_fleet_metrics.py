"""A fleet's metrics (issue 31): each node's reachability and last answer, downloads in flight,
refusals by reason, request-log rows lost; every log line JSON with PAR_LOG_FORMAT=json.

Real processes: a node and a collector under gunicorn (two workers: the counts are every worker's),
Django's logging in a real process for Python's warnings.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
import requests
from django.db import DatabaseError

from collector.models import RequestLog
from pcapgen import ether, tcp, write_pcap
from tests.collector.live import import_config, live_database
from tests.servers import free_port, gunicorn, run
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.slow
ADMIN = "54b22f56-9a84-4893-bc70-332e3b5ded66"
T0 = 1_700_000_000


def test_a_collector_reports_each_nodes_reachability_refusals_and_downloads(tmp_path):
    node_dir = tmp_path / "node"
    (node_dir / "capture").mkdir(parents=True)
    (node_dir / "filed").mkdir()
    records = [
        ((T0 + 1) * 10**9 + i, ether(tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"x", seq=i))) for i in range(20)
    ]
    write_pcap(node_dir / "capture" / f"pcap.{T0}", records)
    node_env = {"PAR_DATA_DIR": str(node_dir), "PAR_CAPTURE_DIR": str(node_dir / "capture")}
    node_env |= {"PAR_FILER_DIR": str(node_dir / "filed"), "PAR_LOG_FORMAT": "json"}
    with gunicorn("node", node_env) as node:
        nodes = {"1": node.url.removeprefix("http://"), "2": f"127.0.0.1:{free_port()}"}  # 2: nobody there
        with live_database(tmp_path) as url:
            env = {"DATABASE_URL": url, "PAR_DATA_DIR": str(tmp_path), "PAR_KEY_PEPPER": "fleet"}
            import_config(env, tmp_path, nodes, {ADMIN: ["0"]})
            with gunicorn("collector", env, workers=2) as collector:
                before = time.time()
                query = {"src_addr": "10.0.0.1", "src_port": "1234", "dst_addr": "10.0.0.2", "dst_port": "80"}
                query |= {"start_time": str(T0), "end_time": str(T0 + 60), "node_id": "1"}
                assert requests.get(f"{collector.url}/data.pcap", params=query, timeout=30).status_code == 401
                bad = requests.get(
                    f"{collector.url}/data.pcap", params=query | {"api_key": "par_" + "x" * 43}, timeout=30
                )
                assert bad.status_code == 401
                pcap = requests.get(
                    f"{collector.url}/data.pcap", params=query | {"api_key": ADMIN}, timeout=30
                )
                assert pcap.status_code == 200
                samples = scrape(collector.url)
        node_log = node.log()
    assert value(samples, "par_node_up", node="1") == 1
    assert value(samples, "par_node_up", node="2") == 0
    assert value(samples, "par_node_last_success_timestamp_seconds", node="1") >= before
    assert ("par_node_last_success_timestamp_seconds", (("node", "2"),)) not in samples
    pings = value(samples, "par_http_requests_total", view="/ping", status="401")  # the start's, keyless
    assert value(samples, "par_refusals_total", status="401", reason="not_authenticated") == pings + 1
    assert value(samples, "par_refusals_total", status="401", reason="authentication_failed") == 1
    assert ("par_downloads_in_flight", ()) in samples and value(samples, "par_downloads_in_flight") == 0
    # The node, with PAR_LOG_FORMAT=json: every line its workers wrote is JSON, and no static files.
    for line in node_log.splitlines():
        json.loads(line)
    assert "No directory at" not in node_log


def test_a_node_scrape_counts_a_refused_caller(tmp_path):
    for name in ("capture", "filed"):
        (tmp_path / name).mkdir()
    env = {"PAR_DATA_DIR": str(tmp_path), "PAR_CAPTURE_DIR": str(tmp_path / "capture")}
    env |= {"PAR_FILER_DIR": str(tmp_path / "filed"), "PAR_NODE_SECRET": "the-secret"}
    with gunicorn("node", env) as node:
        assert requests.get(f"{node.url}/ping", timeout=10).status_code == 403  # no secret
        samples = scrape(node.url)
    # Refused before any route is matched: counted as "unmatched"; the start's own /ping polls too.
    refused = sum(
        v
        for (name, labels), v in samples.items()
        if name == "par_http_requests_total" and ("status", "403") in labels
    )
    assert refused >= 1
    assert value(samples, "par_refusals_total", status="403", reason="caller_refused") == refused


@pytest.mark.django_db
def test_a_request_log_row_that_cannot_be_written_is_counted(monkeypatch):
    from collector import requestlog
    from collector.metrics import REQUEST_LOG_FAILURES

    def broken(row):
        raise DatabaseError("disk full")  # what the database would raise

    monkeypatch.setattr(requestlog, "insert", broken)
    before = REQUEST_LOG_FAILURES._value.get()
    row = RequestLog.begin("flows")  # the view's bookkeeping, as a /flows answer finishes it
    with pytest.raises(DatabaseError):
        row.finish(200)
    assert REQUEST_LOG_FAILURES._value.get() == before + 1


def test_python_warnings_are_json_lines_with_par_log_format_json(tmp_path):
    code = (
        "import django, warnings; django.setup(); warnings.warn('an old way of doing it', DeprecationWarning)"
    )
    result = run(
        [sys.executable, "-W", "always", "-c", code],
        {
            "PAR_LOG_FORMAT": "json",
            "PAR_DATA_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "parsite.settings",
            "PATH": "/usr/bin:/bin",
        },
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line JSON
    warned = [line for line in lines if line["logger"] == "py.warnings"]
    assert len(warned) == 1 and warned[0]["level"] == "WARNING"
    assert "DeprecationWarning: an old way of doing it" in warned[0]["message"]
