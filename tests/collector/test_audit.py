"""The audit line: one per /data.pcap and /flows, who, which nodes, selectors, window, outcome."""

from __future__ import annotations

import json
import logging

from parsite.logs import JsonFormatter
from tests.collector.test_api import FLOW


def audit_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "par.audit"]


def test_a_download_from_a_dead_node_is_one_audit_line(api, node1_key, caplog):
    caplog.set_level(logging.INFO, logger="par.audit")
    response = api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "1"}, REMOTE_ADDR="198.51.100.4")
    assert response.status_code == 502
    (record,) = audit_records(caplog)
    line = record.getMessage()
    assert line.startswith(f"audit data.pcap by {node1_key.row.prefix} from 198.51.100.4: nodes 1 ")
    assert "[2001-01-01T17:01:00Z, 2001-01-01T17:05:00Z]" in line and "src_addr=10.0.0.1" in line
    assert "-> 502" in line
    assert node1_key.key not in line
    as_json = json.loads(JsonFormatter().format(record))
    assert as_json["audit_nodes"] == [1] and as_json["audit_status"] == 502
    assert as_json["audit_key"] == node1_key.row.prefix and as_json["audit_client"] == "198.51.100.4"
    assert as_json["audit_window_start"] == "2001-01-01T17:01:00Z"
    assert node1_key.key not in json.dumps(as_json)


def test_a_refusal_is_audited_too(api, node1_key, caplog):
    caplog.set_level(logging.INFO, logger="par.audit")
    api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "2"})  # not granted: 403
    (record,) = audit_records(caplog)
    assert (record.audit["audit_view"], record.audit["audit_status"]) == ("data.pcap", 403)


def test_a_request_log_row_finished_writes_its_audit_line_once(db, caplog):
    from collector.requestlog import RequestLog

    caplog.set_level(logging.INFO, logger="par.audit")
    entry = RequestLog.begin(
        "flows", client_ip="192.0.2.9", query={"src_addr": "10.0.0.1", "api_key": "x" * 40}
    )
    entry.by("par_AbCd1234")
    entry.asked([1, 3])
    entry.finish(200, 4096)
    entry.finish(200, 4096)
    (record,) = audit_records(caplog)
    assert record.getMessage().startswith(
        "audit flows by par_AbCd1234 from 192.0.2.9: nodes 1,3 [] src_addr=10.0.0.1"
    )
    assert "x" * 40 not in record.getMessage()
