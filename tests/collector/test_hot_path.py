"""The statements a small call makes, and the hot path's statements built once (collector.prepared)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from collector.models import ApiKey, KeyStream, Node, RequestLog
from collector.prepared import PreparedSelect, insert
from collector.proxy import Download
from pcapgen import ether, pcap_bytes, udp
from tests.collector.live import KeepAliveNode

FLOW = {"src_addr": "10.0.0.1", "start_time": "2001-01-01T17:01:00Z", "end_time": "2001-01-01T17:02:00Z"}
PCAP = pcap_bytes([(978368461 * 10**9, ether(udp("10.0.0.1", 1234, "10.0.0.2", 53, b"q")))])


@pytest.fixture
def node1(nodes) -> Iterator[KeepAliveNode]:
    server = KeepAliveNode(PCAP)
    Node.objects.filter(pk=1).update(address=server.address)
    yield server
    server.close()


def statements(call) -> list[str]:
    call()  # the first of a minute also writes last_used and claims a share of the key's rate
    with CaptureQueriesContext(connection) as queries:
        response = call()
        if response.streaming:
            b"".join(response.streaming_content)
    assert response.status_code == 200
    return [query["sql"].split(" (")[0].split(" WHERE")[0] for query in queries.captured_queries]


def test_a_small_head_through_a_granted_key_is_three_statements(api, node1_key, node1):
    done = statements(lambda: api.head("/data.pcap", {**FLOW, "node_id": "1"}, headers=node1_key.headers))
    # The key; the nodes asked that it is granted (active or not); the request log's row. Its rate
    # (600 a minute) was counted for 12 requests by the first.
    assert len(done) == 3, done
    assert [sql.split('"')[1] for sql in done] == [
        "collector_apikey",
        "collector_node",
        "collector_requestlog",
    ]


def test_a_small_download_adds_its_slot_taken_and_given_back(api, node1_key, node1):
    done = statements(lambda: api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "1"}))
    assert len(done) == 5, done


def test_a_prepared_select_runs_its_statement_with_each_call_s_values(nodes, admin_key, node1_key):
    by_ids = PreparedSelect(lambda *ids: Node.objects.filter(pk__in=ids).order_by("id"))
    assert [node.id for node in by_ids.rows(1)] == [1]
    assert [node.id for node in by_ids.rows(2)] == [2]
    assert [node.id for node in by_ids.rows(2, 1)] == [1, 2]
    by_hash = PreparedSelect(lambda digest: ApiKey.objects.filter(key_hash=digest))
    (key,) = by_hash.rows(admin_key.row.key_hash)
    # Values as the ORM gives them (SQLite keeps datetimes as text and booleans as numbers).
    assert key == admin_key.row and key.admin is True and key.all_nodes is False
    assert key.created == ApiKey.objects.get(pk=key.pk).created and key.created.tzinfo is not None
    assert by_hash.rows(node1_key.row.key_hash)[0].admin is False


def test_a_prepared_select_refuses_a_query_whose_parameters_are_not_its_values(db):
    fixed = PreparedSelect(lambda name: Node.objects.filter(name=name, address="somewhere"))
    with pytest.raises(ValueError, match="not the values given"):
        fixed.rows("sensor")


def test_insert_writes_the_row_the_orm_reads_back(db):
    entry = RequestLog(
        time=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        key_prefix="par_abcdefgh",
        nodes="1,2",
        outcomes=[{"node": 1, "status": 200, "bytes": 24, "error": ""}],
        src_addr="2001:db8::2",
        client_ip="192.0.2.7",
        status=200,
        bytes_sent=24,
        duration=0.25,
    )
    insert(entry)
    assert entry.pk is not None and not entry._state.adding
    row = RequestLog.objects.get(pk=entry.pk)
    assert (row.time, row.outcomes, row.src_addr, row.client_ip, row.duration) == (
        entry.time,
        entry.outcomes,
        "2001:db8::2",
        "192.0.2.7",
        0.25,
    )


def test_a_downloads_row_is_written_when_the_server_closes_it_after_its_last_byte(db):
    entry = RequestLog.begin("data.pcap", client_ip="192.0.2.7")
    entry.asked([1])
    entry.hold(KeyStream.acquire("key:1", 1))
    download = Download(iter([b"pcap ", b"bytes"]), entry, [])
    assert b"".join(download) == b"pcap bytes"
    assert not KeyStream.objects.exists()  # the slot is free as the last byte goes out
    assert not RequestLog.objects.exists()  # the row is not on the client's wait
    download.close()  # the WSGI server, once it has sent the answer's end
    row = RequestLog.objects.get()
    assert (row.status, row.bytes_sent, row.error) == (200, 10, "")


def test_a_heads_row_is_written_once_its_answer_is_sent_not_before(api, node1_key, node1):
    response = api.head("/data.pcap", {**FLOW, "node_id": "1"}, headers=node1_key.headers)
    assert response.status_code == 200
    assert not RequestLog.objects.exists()  # the headers are the client's before the row is written
    b"".join(response.streaming_content)  # the server sends the (empty) body, then closes the answer
    row = RequestLog.objects.get()
    assert (row.method, row.status, row.node) == ("HEAD", 200, 1)


def test_a_refusals_row_is_written_as_its_answer_closes(api, node1_key, node1):
    # Django's test client closes a whole (not streamed) answer as a WSGI server does after sending it.
    response = api.get_as(node1_key, "/data.pcap", {**FLOW, "node_id": "2"})
    assert response.status_code == 403
    row = RequestLog.objects.get()
    assert (row.status, row.error) == (403, "this API key may not query that node")
