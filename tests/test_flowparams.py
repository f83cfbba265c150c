"""The one validator of /data.pcap parameters, shared by node and collector."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address, ip_network

import pytest
from django.http import QueryDict

from api.flowparams import (
    FLOWS_PARAMS,
    PCAP_PARAMS,
    AnswerOptions,
    FlowParamError,
    ListingOptions,
    parse_answer_options,
    parse_flow_query,
    parse_listing_options,
    parse_selection,
    parse_time,
    selection_params,
    window_text,
)
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


@pytest.mark.parametrize("name", ["proto", "community_id", "format", "limit_packets", "node_id"])
def test_a_parameter_given_empty_is_named_not_ignored(name):
    error = refusal(**{name: ""})
    assert error.param == name and str(error) == f"empty parameter: {name} (leave out a parameter not wanted)"


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


# ---------------------------------------------------------------- selections (every selector optional)

NOW = epoch_ns(2026, 12, 1, 7, 30) + 123_456_789
WINDOW = {"start_time": "2026-12-01T07:00:00Z", "end_time": "2026-12-01T07:30:00Z"}


def selection(**params: str):
    return parse_selection({**WINDOW, **params}, utc=True, max_window=86400, now_ns=NOW)


def selection_refusal(known=PCAP_PARAMS, **params: str) -> FlowParamError:
    with pytest.raises(FlowParamError) as info:
        parse_selection({**WINDOW, **params}, utc=True, max_window=86400, now_ns=NOW, known=known)
    return info.value


def test_every_selector_is_optional():
    s = selection()
    assert s.any_flow and (s.start_ns, s.end_ns) == (epoch_ns(2026, 12, 1, 7), epoch_ns(2026, 12, 1, 7, 30))


def test_the_seeds_full_query_is_read_as_before():
    s = parse_selection(GOOD, utc=True, max_window=86400)
    assert (s.src, s.src_port, s.dst, s.dst_port) == (
        ip_network("1.1.1.1/32"),
        111,
        ip_network("2.2.2.2/32"),
        222,
    )
    assert s.exact_flow and s.protocols == (6, 17, 132)


@pytest.mark.parametrize(
    ("value", "network"),
    [
        ("10.1.0.0/16", "10.1.0.0/16"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("10.1.2.3/32", "10.1.2.3/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("2001:db8::/48", "2001:db8::/48"),
        ("[2001:db8::1]", "2001:db8::1/128"),
        (" 192.0.2.0/24 ", "192.0.2.0/24"),
    ],
)
def test_an_address_or_a_network_selects_an_end(value, network):
    assert selection(src_addr=value).src == ip_network(network)
    assert selection(dst_addr=value).dst == ip_network(network)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("10.1.2.3/16", "host bits set; the network is 10.1.0.0/16"),
        ("10.0.0.0/33", "0 to 32"),
        ("2001:db8::/129", "0 to 128"),
        ("10.0.0.0/255.255.0.0", "network like"),
        ("10.0.0.0/", "network like"),
        ("10.0.0.0/+8", "network like"),
        ("fe80::1%eth0", "network like"),
        ("example.org", "network like"),
        ("10.0.0.0/١٦", "network like"),
    ],
)
def test_a_bad_network_is_named(value, says):
    error = selection_refusal(src_addr=value)
    assert error.param == "src_addr" and says in str(error)
    assert selection_refusal(dst_addr=value).param == "dst_addr"


@pytest.mark.parametrize(("value", "number"), [("icmp", 1), ("ICMP6", 58), ("tcp", 6), ("89", 89)])
def test_proto_names_include_icmp(value, number):
    assert selection(proto=value).proto == number


def test_a_community_id_is_validated():
    good = "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    assert selection(community_id=good).community_id == good
    for bad in ("LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:LQU9qZlK", "2:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:****"):
        error = selection_refusal(community_id=bad)
        assert error.param == "community_id" and "community_id" in str(error)


@pytest.mark.parametrize("name", ["comunity_id", "src_ip", "start", "limit"])
def test_an_unknown_parameter_is_refused_by_name(name):
    error = selection_refusal(**{name: "x"})
    assert error.param == name and f"unknown parameter: {name}" == str(error)


def test_every_unknown_parameter_is_named():
    assert str(selection_refusal(zz="1", aa="2")) == "unknown parameters: aa, zz"


def test_the_listing_parameters_are_known_to_flows():
    parse_selection({**WINDOW, "limit": "5", "sort": "last"}, utc=True, max_window=86400, known=FLOWS_PARAMS)
    for name in ("api_key", "node_id", "format", "limit_packets", "limit_bytes"):
        parse_selection({**WINDOW, name: "1"}, utc=True, max_window=86400, known=PCAP_PARAMS)


def test_a_parameter_given_twice_is_refused():
    params = QueryDict("start_time=0&end_time=10&src_addr=10.0.0.1&src_addr=10.0.0.2")
    with pytest.raises(FlowParamError) as info:
        parse_selection(params, utc=True, max_window=86400)
    assert info.value.param == "src_addr" and "more than once" in str(info.value)


def test_start_time_is_required_and_end_time_defaults_to_now():
    assert parse_selection({"start_time": "-15m"}, utc=True, max_window=86400, now_ns=NOW).end_ns == NOW
    with pytest.raises(FlowParamError) as info:
        parse_selection({"src_addr": "10.0.0.1"}, utc=True, max_window=86400)
    assert info.value.param == "start_time"


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [
        ("now", 0),
        ("-15m", 900),
        ("-2h", 7200),
        ("-1d", 86400),
        ("-90s", 90),
        ("15m ago", 900),
        ("15 minutes ago", 900),
        ("2 hours ago", 7200),
        ("-1h30m", 5400),
        ("now-10m", 600),
        ("now - 1w", 604800),
        (" NOW ", 0),
    ],
)
def test_relative_times_count_back_from_now(text, seconds_ago):
    assert parse_time(text, now_ns=NOW) == NOW - seconds_ago * NS


@pytest.mark.parametrize(
    "text",
    [
        "1h",  # read as 01:00 by a date parser
        "10m",
        "Monday",  # read as today by a date parser
        "monday 5pm",
        "-5",  # read as the 5th of the month
        "at 5",
        "5",  # an epoch, but below: "5" alone stays epoch seconds
        "01/12/2026",  # 12 January or 1 December
        "12/01/2026",
        "1.12.2026",
        "-10 m ago",
        "+15m",
        "15m",
        "in 15m",
        "-15y",
        "-1 month",
        "yesterday",
        "2015-02-26 16",
        "Fri, 26 Feb 2015 08:00:00 PST",  # the 26th was a Thursday
        "13pm",
        "0am",
        "2015-02-26T",
        "2015-02-26 16:00 +25:00",
        "now+5m",
        "T16:00",
    ],
)
def test_times_that_cannot_be_read_in_exactly_one_way_are_refused(text):
    if text == "5":
        assert parse_time(text) == 5 * NS
        return
    with pytest.raises(ValueError):
        parse_time(text, now_ns=NOW)
    assert selection_refusal(start_time=text).param == "start_time"
    assert selection_refusal(end_time=text).param == "end_time"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26 Feb 2015 16:00", epoch_ns(2015, 2, 26, 16)),
        ("Feb 26, 2015 4pm", epoch_ns(2015, 2, 26, 16)),
        ("Thursday, 26 Feb 2015 16:00 UTC", epoch_ns(2015, 2, 26, 16)),
        ("2015/02/26 16:00", epoch_ns(2015, 2, 26, 16)),
        ("2015-02-26T16:00:00+0100", epoch_ns(2015, 2, 26, 15)),
        ("2015-02-26 12am", epoch_ns(2015, 2, 26, 0)),
        ("2015-02-26 12:30pm", epoch_ns(2015, 2, 26, 12, 30)),
        ("2015-02-26 4 p.m.", epoch_ns(2015, 2, 26, 16)),
        ("2015-02-26", epoch_ns(2015, 2, 26)),
    ],
)
def test_more_calendar_forms(text, expected):
    assert parse_time(text) == expected


def test_a_local_time_a_clock_change_makes_ambiguous_is_refused(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert parse_time("2025-10-26 01:30", utc=False) == epoch_ns(2025, 10, 25, 23, 30)
        for text in ("2025-10-26 02:30", "2025-03-30 02:30"):  # repeated, then skipped
            with pytest.raises(ValueError, match="clock change"):
                parse_time(text, utc=False)
        assert parse_time("2025-10-26 02:30Z", utc=False) == epoch_ns(2025, 10, 26, 2, 30)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_window_is_shown_in_utc_to_the_nanosecond():
    assert window_text(epoch_ns(2026, 12, 1, 5, 40) + 123_456_789, 0) == (
        "2026-12-01T05:40:00.123456789Z/1970-01-01T00:00:00.000000000Z"
    )


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"src_addr": "10.1.0.0/16", "dst_port": "445"},
        {"src_addr": "2001:db8::1", "dst_addr": "2001:db8::/32", "proto": "icmp6"},
        {"community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "src_port": "0"},
        {"start_time": "1424966400.300000001", "end_time": "1424966401.5"},
    ],
)
def test_the_collector_hands_the_node_the_same_selection(params):
    s = selection(**params)
    assert parse_selection(selection_params(s), utc=False, max_window=86400) == s


def test_answer_and_listing_options():
    assert parse_answer_options({}) == AnswerOptions("pcap", None, None)
    assert parse_answer_options({"format": "pcapng", "limit_packets": "10", "limit_bytes": "100000"}) == (
        AnswerOptions("pcapng", 10, 100000)
    )
    assert parse_listing_options({}) == ListingOptions("first", 1000, "json")
    assert parse_listing_options({"sort": "-packets", "limit": "100000", "output": "csv"}) == (
        ListingOptions("-packets", 100000, "csv")
    )
    for name, value in [
        ("format", "pcap-ng"),
        ("limit_packets", "0"),
        ("limit_packets", "-1"),
        ("limit_bytes", "1e6"),
        ("limit_bytes", "9" * 20),
        ("sort", "bytes"),
        ("limit", "100001"),
        ("limit", "0"),
        ("output", "xml"),
    ]:
        with pytest.raises(FlowParamError) as info:
            parse_answer_options({name: value}) if name in ("format", "limit_packets", "limit_bytes") else (
                parse_listing_options({name: value})
            )
        assert info.value.param == name and name in str(info.value)
