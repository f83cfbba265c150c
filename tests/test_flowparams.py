"""The one validator of /data.pcap parameters, shared by node and collector."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address

import pytest

from api.flowparams import FlowParamError, parse_flow_query, parse_time
from tests.servers import SEED_QUERY

NS = 1_000_000_000
GOOD = SEED_QUERY


def query(utc: bool = True, max_window: int = 86400, **changes: str):
    return parse_flow_query({**GOOD, **changes}, utc=utc, max_window=max_window)


def refusal(**changes: str) -> FlowParamError:
    with pytest.raises(FlowParamError) as info:
        query(**changes)
    return info.value


def epoch_ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * NS


def test_the_seeds_example_query_is_read_as_utc():
    q = query()
    assert (q.a, q.a_port, q.b, q.b_port) == (ip_address("1.1.1.1"), 111, ip_address("2.2.2.2"), 222)
    assert q.start_ns == epoch_ns(2001, 1, 1, 17, 1)
    assert q.end_ns == epoch_ns(2001, 1, 1, 17, 5)
    assert q.proto is None


@pytest.mark.parametrize("name", ["src_addr", "src_port", "dst_addr", "dst_port", "start_time", "end_time"])
def test_a_missing_or_blank_parameter_is_named(name):
    params = dict(GOOD)
    del params[name]
    with pytest.raises(FlowParamError) as info:
        parse_flow_query(params, utc=True, max_window=86400)
    assert info.value.param == name and name in str(info.value)
    assert refusal(**{name: "  "}).param == name


@pytest.mark.parametrize(
    "value",
    [
        "example.org",
        "1.1.1",
        "1.1.1.256",
        "01.1.1.1",
        "1.1.1.1/32",
        "fe80::1%eth0",
        "::g",
        "١.١.١.١",
        "1.1.1.1 x",
    ],
)
def test_an_address_must_be_an_ip_literal(value):
    error = refusal(src_addr=value)
    assert error.param == "src_addr" and "src_addr" in str(error)
    assert refusal(dst_addr=value).param == "dst_addr"


@pytest.mark.parametrize("value", ["2001:db8::1", "[2001:db8::1]", "::ffff:1.2.3.4", " 10.0.0.1 "])
def test_ipv6_and_bracketed_addresses_are_accepted(value):
    assert query(src_addr=value).a == ip_address(value.strip().strip("[]"))


@pytest.mark.parametrize("value", ["-1", "65536", "99999", "1.5", "http", "٤٤٣", "0x50", "+80", "123456"])
def test_a_port_must_be_0_to_65535(value):
    error = refusal(src_port=value)
    assert error.param == "src_port" and "0 to 65535" in str(error)
    assert refusal(dst_port=value).param == "dst_port"


@pytest.mark.parametrize("value", ["0", "65535", "00080"])
def test_port_bounds_are_inclusive(value):
    assert query(dst_port=value).b_port == int(value)


@pytest.mark.parametrize(("value", "number"), [("tcp", 6), ("UDP", 17), ("sctp", 132), ("47", 47), ("0", 0)])
def test_proto_takes_a_name_or_a_number(value, number):
    assert query(proto=value).proto == number


@pytest.mark.parametrize("value", ["icmpx", "256", "-1", "²", "6.0"])
def test_a_bad_proto_is_named(value):
    assert refusal(proto=value).param == "proto"


def test_an_empty_proto_means_any_port_protocol():
    assert query(proto="").proto is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-02-26T16:00:00Z", epoch_ns(2015, 2, 26, 16)),
        ("2015-02-26T18:00:00+02:00", epoch_ns(2015, 2, 26, 16)),
        ("2015-02-26 16:00:00", epoch_ns(2015, 2, 26, 16)),
        ("20150226T160000Z", epoch_ns(2015, 2, 26, 16)),
        ("2015-02-26 4pm", epoch_ns(2015, 2, 26, 16)),
        ("2001-01-01 5:01pm", epoch_ns(2001, 1, 1, 17, 1)),
        ("2015-02", epoch_ns(2015, 2, 1)),
        ("1424966400", epoch_ns(2015, 2, 26, 16)),
        ("0", 0),
        ("2015-02-26 16:00 GMT", epoch_ns(2015, 2, 26, 16)),
        ("2015-02-26 11:00 EST", epoch_ns(2015, 2, 26, 16)),
        ("Thu, 26 Feb 2015 08:00:00 PST", epoch_ns(2015, 2, 26, 16)),
        ("2015-02-26 19:00 UTC+3", epoch_ns(2015, 2, 26, 16)),  # east of UTC, as Ruby reads it
        ("2015-02-26 11:00 GMT-05:00", epoch_ns(2015, 2, 26, 16)),
    ],
)
def test_time_forms(text, expected):
    assert parse_time(text) == expected


def test_epoch_fractions_are_exact_to_the_nanosecond():
    # 0.1 + 0.2 in binary floating point would not come out exact.
    assert parse_time("1424966400.300000001") == 1424966400 * NS + 300_000_001
    assert parse_time("1424966400.1") == 1424966400 * NS + 100_000_000
    assert parse_time("1.999999999999") == 1 * NS + 999_999_999
    assert parse_time("1.99999999999999999999999999999999999") == 1 * NS + 999_999_999  # never rounded up


def test_iso_fractions_are_exact_to_the_nanosecond():
    assert parse_time("2015-02-26T16:00:00.123456789Z") == epoch_ns(2015, 2, 26, 16) + 123_456_789
    assert parse_time("2015-02-26 16:00:00,5") == epoch_ns(2015, 2, 26, 16) + 500_000_000


def test_a_time_without_a_date_is_today():
    today = datetime.now(UTC).date()
    assert parse_time("5pm") == epoch_ns(today.year, today.month, today.day, 17)


def test_a_zoneless_time_is_local_when_utc_is_off(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_time("2015-02-26 11:00", utc=False) == epoch_ns(2015, 2, 26, 16)
        assert parse_time("2015-02-26 16:00Z", utc=False) == epoch_ns(2015, 2, 26, 16)  # a zone wins
        assert parse_time("1424966400", utc=False) == epoch_ns(2015, 2, 26, 16)  # epochs have no zone
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("value", ["yesterday-ish", "tcp", "2015-13-45", "25:00", "", "1e9", "١٤٢٤٩٦٦٤٠٠"])
def test_an_unreadable_start_time_is_invalid_start_time(value):
    error = refusal(start_time=value) if value else refusal(start_time=" ")
    assert error.param == "start_time"
    if value:
        assert str(error).startswith("invalid start time")


@pytest.mark.parametrize(
    "value", ["2015-02-26 16:00 FOO", "2015-02-26 18:00 CEST", "2015-02-26 16:00:00 XYZ"]
)
def test_an_unknown_zone_name_is_refused_not_read_as_utc(value):
    error = refusal(start_time=value, end_time="2015-02-26 20:00Z")
    assert error.param == "start_time" and str(error).startswith("invalid start time")


def test_an_unreadable_end_time_is_invalid_end_time():
    error = refusal(end_time="not a time")
    assert error.param == "end_time" and str(error).startswith("invalid end time")


def test_end_before_start_is_refused_and_equal_is_fine():
    assert refusal(end_time="2001-01-01 5:00pm").param == "end_time"
    q = query(end_time="2001-01-01 5:01pm")
    assert q.start_ns == q.end_ns


def test_the_window_is_at_most_max_window():
    assert query(max_window=240).end_ns - query(max_window=240).start_ns == 240 * NS
    error = refusal(start_time="978368460", end_time="978368700.000000001", max_window=240)
    assert error.param == "end_time" and "240" in str(error)


def test_a_time_far_out_of_range_is_invalid_not_a_crash():
    assert refusal(end_time="99999999999-01-01").param == "end_time"
    assert refusal(start_time="0001-01-01").param == "start_time"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("9999-12-31T23:00:00-23:59", "9999-12-31T23:59:59-23:59"),  # past the year 9999 in UTC
        ("9999-12-31T23:00:00Z", "9999-12-31T23:59:59Z"),  # the year 10000 in a zone east of UTC
    ],
)
def test_a_time_past_what_a_datetime_holds_is_refused(start, end):
    error = refusal(start_time=start, end_time=end)
    assert error.param == "end_time" and "after the year 9998" in str(error)
    assert query(start_time="9998-12-31T23:00:00Z", end_time="9998-12-31T23:59:59Z")
