"""GET /data.pcap through Django's test client, over a real capture tree (filed hours and a live file)."""

from __future__ import annotations

import os
from ipaddress import ip_address

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import Client, RequestFactory, override_settings

from engine.query.plan import query_captures
from engine.selection.selectors import FlowQuery
from node import store, views
from pcapgen import ether, pcap_bytes, tcp, write_pcap
from tests.node.captures import A_PORT, B_PORT, FILE_SECONDS, NS, T0, A, B, make_tree, window

PCAP_HEADER_SIZE = 24


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("node"))


@pytest.fixture
def node(tree):
    with override_settings(
        ROOT_URLCONF="parsite.urls_node",
        PAR_ROLE="node",
        PAR_CAPTURE_DIR=tree.capture_dir,
        PAR_FILER_DIR=tree.filer_dir,
        PAR_UTC=True,
    ):
        yield Client()


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_valid_query_answers_a_pcap_download(node):
    response = node.get("/data.pcap", window(T0, T0 + 30))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/vnd.tcpdump.pcap"
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="10.0.0.1_40000-10.0.0.2_80-20150226T160000Z.pcap"'
    )
    assert body(response)[:4] == b"\xd4\xc3\xb2\xa1"


def test_missing_timeframe_is_a_404_with_the_seeds_message(node):
    response = node.get("/data.pcap", window(978368460, 978368700))  # 2001: nothing captured then
    assert response.status_code == 404
    assert response.json() == {"error": "no capture data for that timeframe"}


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (T0, T0 + 3 * FILE_SECONDS),  # everything: two filed files and the live one
        (T0 + 30, T0 + 90),  # the tail of one filed file, the head of the next
        (T0 + 2 * FILE_SECONDS, T0 + 2 * FILE_SECONDS + 59),  # only the live file
        (T0 + 59.5, T0 + 60.5),  # across a file boundary, sub-second
    ],
)
def test_the_answer_is_byte_exact(node, tree, start, end):
    response = node.get("/data.pcap", window(start, end))
    assert response.status_code == 200
    start_ns, end_ns = int(start * NS), int(end * NS)
    expected = tree.expected(start_ns, end_ns)
    assert len(expected) > PCAP_HEADER_SIZE  # the window holds packets of the flow
    got = body(response)
    assert got == expected
    # The engine alone gives the same bytes: the view adds nothing and drops nothing.
    query = FlowQuery(ip_address(A), A_PORT, ip_address(B), B_PORT, start_ns, end_ns)
    assert got == b"".join(query_captures(tree.files, query))


def test_the_flow_is_matched_both_ways_whichever_end_is_src(node, tree):
    params = window(T0, T0 + 60)
    swapped = {
        **params,
        "src_addr": params["dst_addr"],
        "src_port": params["dst_port"],
        "dst_addr": params["src_addr"],
        "dst_port": params["src_port"],
    }
    assert body(node.get("/data.pcap", swapped)) == body(node.get("/data.pcap", params))


def test_the_last_minute_is_answered_from_the_live_file(node, tree):
    last_packet = max(ts for ts, _, in_flow in tree.records if in_flow)
    response = node.get("/data.pcap", window(last_packet / NS - 1, last_packet / NS))
    got = body(response)
    assert got == tree.expected(last_packet - NS, last_packet)
    assert got.endswith(next(frame for ts, frame, _ in tree.records if ts == last_packet))


def test_proto_narrows_the_answer(node, tree):
    response = node.get("/data.pcap", {**window(T0, T0 + 60), "proto": "udp"})
    got = body(response)
    assert got == tree.expected(T0 * NS, (T0 + 60) * NS, proto=17)
    assert got != tree.expected(T0 * NS, (T0 + 60) * NS)


def test_covered_time_without_a_match_is_an_empty_pcap(node):
    response = node.get("/data.pcap", {**window(T0, T0 + 60), "dst_port": "81"})
    assert response.status_code == 200
    got = body(response)
    assert len(got) == PCAP_HEADER_SIZE and got[:4] == b"\xd4\xc3\xb2\xa1"


def test_an_ipv6_flow_gets_a_safe_file_name(tmp_path):
    capture, filed = tmp_path / "capture", tmp_path / "filed"
    capture.mkdir()
    filed.mkdir()
    packet = ether(tcp("2001:db8::1", 443, "2001:db8::2", 50000, b"hello"))
    write_pcap(capture / f"pcap.{T0}", [(T0 * NS + 500_000_000, packet)])
    params = {
        "src_addr": "2001:db8::1",
        "src_port": "443",
        "dst_addr": "[2001:db8::2]",
        "dst_port": "50000",
        "start_time": "2015-02-26T16:00:00.25Z",
        "end_time": "2015-02-26T16:01:00Z",
    }
    with override_settings(
        ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node", PAR_CAPTURE_DIR=capture, PAR_FILER_DIR=filed
    ):
        response = Client().get("/data.pcap", params)
    name = response["Content-Disposition"].split('filename="')[1].rstrip('"')
    assert name == "2001-db8--1_443-2001-db8--2_50000-20150226T160000.25Z.pcap"
    assert set(name) <= set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_")
    assert body(response) == pcap_bytes([(T0 * NS + 500_000_000, packet)])


def test_a_damaged_capture_is_a_json_error_not_a_crash(tmp_path):
    capture, filed = tmp_path / "capture", tmp_path / "filed"
    capture.mkdir()
    filed.mkdir()
    (capture / f"pcap.{T0}").write_bytes(b"this is not a pcap file at all, not even close")
    with override_settings(
        ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node", PAR_CAPTURE_DIR=capture, PAR_FILER_DIR=filed
    ):
        response = Client().get("/data.pcap", window(T0, T0 + 60))
    assert response.status_code == 503
    assert response.json() == {"error": "cannot read capture data: a capture file is damaged"}


def test_a_file_filed_between_listing_and_reading_is_still_answered(tree, node, monkeypatch, tmp_path):
    # The filer moves the live file away right after the node listed it.
    capture, filed = tmp_path / "capture", tmp_path / "filed"
    capture.mkdir()
    filed.mkdir()
    live = capture / f"pcap.{T0}"
    records = [(T0 * NS + i * 1000, frame) for i, (_, frame, _) in enumerate(tree.records[:50])]
    write_pcap(live, records)
    listed = store.captures_for_window
    calls = []

    def listing_then_filing(*args, **kwargs):
        paths = listed(*args, **kwargs)
        if not calls:
            target = filed / "2015" / "02" / "26" / "16"
            target.mkdir(parents=True)
            os.rename(live, target / live.name)
        calls.append(paths)
        return paths

    monkeypatch.setattr(store, "captures_for_window", listing_then_filing)
    with override_settings(
        ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node", PAR_CAPTURE_DIR=capture, PAR_FILER_DIR=filed
    ):
        response = Client().get("/data.pcap", window(T0, T0 + 60))
    assert response.status_code == 200
    assert len(calls) == 2 and calls[0] != calls[1]
    assert len(body(response)) > PCAP_HEADER_SIZE


def test_closing_the_answer_early_closes_the_capture_files(node, tree):
    def open_captures() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            count += target.startswith(str(tree.capture_dir.parent))
        return count

    before = open_captures()
    # The view itself, as a WSGI server gets its response (the test client would wrap it).
    request = RequestFactory().get("/data.pcap", window(T0, T0 + 3 * FILE_SECONDS))
    response = views.DataPcapView.as_view()(request)
    next(iter(response.streaming_content))
    assert open_captures() > before  # the engine holds the files while it answers
    # What the WSGI server does when the client goes away (without the database clean-up of
    # request_finished: there is no database in this test).
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    assert open_captures() == before


def test_zoneless_times_are_local_when_par_utc_is_off(tmp_path, monkeypatch):
    import time

    live_only = make_tree(tmp_path, files=1, packets=50)  # nothing filed: no hour directories to agree on
    params = {**window(T0, T0 + 60), "start_time": "2015-02-26 11:00", "end_time": "2015-02-26 11:01"}
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        with override_settings(
            ROOT_URLCONF="parsite.urls_node",
            PAR_ROLE="node",
            PAR_CAPTURE_DIR=live_only.capture_dir,
            PAR_FILER_DIR=live_only.filer_dir,
            PAR_UTC=False,
        ):
            local = Client().get("/data.pcap", params)
            zoned = Client().get("/data.pcap", {**params, "start_time": "2015-02-26 16:00Z"})  # a zone wins
    finally:
        monkeypatch.undo()
        time.tzset()
    expected = live_only.expected(T0 * NS, (T0 + 60) * NS)
    assert len(expected) > PCAP_HEADER_SIZE
    assert body(local) == body(zoned) == expected


def test_other_methods_are_a_json_405(node):
    # POST takes an alert record (docs/alerts.md); PUT, PATCH and DELETE are not answered.
    response = node.put("/data.pcap", window(T0, T0 + 60))
    assert response.status_code == 405
    assert "error" in response.json()
