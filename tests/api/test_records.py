"""A Suricata or Zeek record read as a query: the flow, the window, and what a bad record is told."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from ipaddress import ip_address

import pytest

from api.records import MAX_RECORD_BYTES, RecordError, record_query
from api.times import parse_time
from engine.dissection.communityid import community_id

ALERT = {
    "timestamp": "2026-12-01T05:40:02.500000+0000",
    "flow_id": 1234567,
    "event_type": "alert",
    "src_ip": "10.0.0.1",
    "src_port": 51234,
    "dest_ip": "192.0.2.7",
    "dest_port": 443,
    "proto": "TCP",
    "alert": {"signature_id": 1, "signature": "test"},
    "flow": {"pkts_toserver": 6, "pkts_toclient": 5, "start": "2026-12-01T05:40:00.123456+0000"},
}
ZEEK = {
    "ts": 1764567600.123456,
    "uid": "CHhAvVGS1DHFjwGM9",
    "id.orig_h": "2001:db8::1",
    "id.orig_p": 40000,
    "id.resp_h": "2001:db8::2",
    "id.resp_p": 53,
    "proto": "udp",
    "duration": 0.25,
}


def packed(text: str) -> bytes:
    return ip_address(text).packed


def suricata7_id(address: str, sport: int, dport: int, proto: int) -> str:
    """Suricata 7.0's Community ID of a flow between two equal addresses: ports ordered byte-swapped."""
    swapped = [int.from_bytes(p.to_bytes(2, "big"), "little") for p in (sport, dport)]
    if swapped[1] < swapped[0]:
        sport, dport = dport, sport
    raw = packed(address)
    message = struct.pack("!H", 0) + raw + raw + struct.pack("!BBHH", proto, 0, sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(message).digest()).decode()


def asked(record: object) -> dict[str, str]:
    return record_query(json.dumps(record).encode()).params


def ns(text: str) -> int:
    return parse_time(text)


def test_an_alert_without_community_id_asks_its_five_tuple_from_its_flow_start_to_after_its_time():
    params = asked(ALERT)
    assert {k: params[k] for k in ("src_addr", "src_port", "dst_addr", "dst_port", "proto")} == {
        "src_addr": "10.0.0.1",
        "src_port": "51234",
        "dst_addr": "192.0.2.7",
        "dst_port": "443",
        "proto": "tcp",
    }
    assert params["start_time"] == "2026-12-01T05:39:59.123456000Z"  # flow.start less 1 s
    assert params["end_time"] == "2026-12-01T05:45:02.500000000Z"  # 5 minutes after the alert


def test_a_flow_record_asks_its_start_to_its_end_one_second_wider():
    record = {
        **ALERT,
        "event_type": "flow",
        "flow": {**ALERT["flow"], "end": "2026-12-01T05:41:00.000001+0000"},
    }
    params = asked(record)
    assert params["start_time"] == "2026-12-01T05:39:59.123456000Z"
    assert params["end_time"] == "2026-12-01T05:41:01.000001000Z"


def test_a_record_without_flow_is_asked_five_minutes_either_side_of_its_time():
    record = {k: v for k, v in ALERT.items() if k != "flow"}
    params = asked(record)
    assert (params["start_time"], params["end_time"]) == (
        "2026-12-01T05:35:02.500000000Z",
        "2026-12-01T05:45:02.500000000Z",
    )


def test_a_community_id_matching_the_five_tuple_is_asked_alone():
    cid = community_id(packed("10.0.0.1"), 51234, packed("192.0.2.7"), 443, 6)
    query = record_query(json.dumps({**ALERT, "community_id": cid}).encode())
    assert set(query.params) == {"community_id", "start_time", "end_time"}
    assert query.params["community_id"] == cid
    assert query.note is None


def test_a_community_id_its_five_tuple_does_not_hash_to_is_replaced_and_said():
    loopback = {**ALERT, "src_ip": "127.0.0.1", "dest_ip": "127.0.0.1", "src_port": 40000, "dest_port": 8080}
    wrong = suricata7_id("127.0.0.1", 40000, 8080, 6)
    query = record_query(json.dumps({**loopback, "community_id": wrong}).encode())
    right = community_id(packed("127.0.0.1"), 40000, packed("127.0.0.1"), 8080, 6)
    assert query.params["community_id"] == right
    assert wrong in (query.note or "") and right in (query.note or "")


def test_a_community_id_without_a_five_tuple_is_taken_as_it_is():
    cid = "1:" + base64.b64encode(hashlib.sha1(b"some flow").digest()).decode()
    params = asked({"event_type": "alert", "timestamp": ALERT["timestamp"], "community_id": cid})
    assert params["community_id"] == cid


def test_icmp_is_asked_by_addresses_and_protocol():
    record = {
        **ALERT,
        "proto": "IPv6-ICMP",
        "src_ip": "::1",
        "dest_ip": "::1",
        "icmp_type": 128,
        "icmp_code": 0,
    }
    for port in ("src_port", "dest_port"):
        record.pop(port)
    params = asked(record)
    assert params["src_addr"] == params["dst_addr"] == "::1"
    assert params["proto"] == "icmp6" and "src_port" not in params


def test_a_zeek_conn_record_asks_ts_to_ts_plus_duration():
    params = asked(ZEEK)
    assert params["src_addr"] == "2001:db8::1" and params["dst_port"] == "53" and params["proto"] == "udp"
    assert params["start_time"] == "2025-12-01T05:39:59.123456000Z"
    assert params["end_time"] == "2025-12-01T05:40:01.373456000Z"


def test_zeek_names_icmpv6_icmp():
    params = asked({**ZEEK, "proto": "icmp", "id.orig_p": 128, "id.resp_p": 129})
    assert params["proto"] == "icmp6"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty body"),
        (b"   \n", "empty body"),
        (b"{", "not JSON"),
        (b"[1, 2]", "a JSON object is required"),
        (b'"text"', "a JSON object is required"),
        (b'{"src_ip": "10.0.0.1"}\n{"src_ip": "10.0.0.2"}', "one JSON record"),
        (b'{"src_ip": "10.0.0.1", "src_ip": "10.0.0.2"}', "given twice"),
        (b'{"src_ip": NaN}', "not JSON"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "src_port": 1e999999}', "invalid src_port"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", "invalid record"),
        (b"{}", "not a Suricata EVE record"),
        (b'{"event_type": "alert", "timestamp": "2026-12-01T05:40:00Z"}', "names no flow"),
        (b'{"event_type": "alert", "src_ip": "10.0.0.1"}', "dest_ip missing"),
        (b'{"uid": "C1", "id.orig_h": "10.0.0.1"}', "id.resp_h missing"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "bad"}', "invalid dest_ip"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "src_port": true}', "invalid src_port"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "src_port": 70000}', "invalid src_port"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "proto": "XYZ"}', "invalid proto"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "timestamp": "Monday"}', "invalid timestamp"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "flow": []}', "invalid flow"),
        (b'{"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "community_id": "1:x"}', "invalid community_id"),
        (b'{"uid": "C", "id.orig_h": "::1", "id.resp_h": "::1", "duration": -1}', "invalid duration"),
        (b'{"uid": "C", "id.orig_h": "::1", "id.resp_h": "::1", "ts": 1e300}', "invalid ts"),
    ],
)
def test_a_bad_record_is_refused_saying_what_is_wrong(body, says):
    with pytest.raises(RecordError, match=says):
        record_query(body)


def test_a_record_over_the_bound_is_refused():
    with pytest.raises(RecordError, match="too large"):
        record_query(b" " * (MAX_RECORD_BYTES + 1))


def test_a_window_is_exact_to_the_nanosecond_from_zeek_epoch_text():
    body = b'{"uid": "C", "id.orig_h": "::1", "id.resp_h": "::1", "ts": 1764567600.000000001, "duration": 0}'
    params = record_query(body).params
    assert ns(params["start_time"]) == 1764567599_000000001
