"""Validation of /data.pcap parameters, shared by node and collector.

The collector validates exactly as the node does, so a bad request is refused
with a 400 before any node round-trip.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from ipaddress import ip_address

from dateutil import parser as dateparser
from dateutil import tz

from engine.flow import LATEST_EPOCH, PROTO_NAMES, FlowQuery, IPAddress

FLOW_PARAMS = ("src_addr", "src_port", "dst_addr", "dst_port", "start_time", "end_time", "proto")

# ASCII digits only: \d would also take other scripts' digits, which int() reads.
_PORT = re.compile(r"[0-9]{1,5}")
_EPOCH = re.compile(r"[0-9]{1,11}(?:\.[0-9]+)?")
# Sub-second digits right after the seconds field, kept exactly (ns) instead
# of dateutil's microseconds.
_FRACTION = re.compile(r"(?<=:[0-9][0-9])[.,]([0-9]+)")
_NS = 1_000_000_000
_TIME_FORMS = "use ISO 8601, epoch seconds or a form like 2001-01-01 5:01pm"
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST_NS = LATEST_EPOCH * _NS
# Zone names with one fixed offset (RFC 2822's, which Ruby's Time.parse reads too), in hours. Any
# other name is refused: dateutil would otherwise ignore it and read the time as UTC.
_ZONE_HOURS = {"UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5}
_ZONE_HOURS |= {"MST": -7, "MDT": -6, "PST": -8, "PDT": -7}
# "UTC+3" is three hours east of UTC, as people (and Ruby) read it; dateutil reads such a name and
# offset POSIX-style, the other way round, so the name goes and the offset stays.
_NAMED_OFFSET = re.compile(r"\b(?:UTC|GMT|UT)\s*(?=[+-][0-9])", re.IGNORECASE)


class FlowParamError(ValueError):
    """A /data.pcap parameter is missing or invalid; the message names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def parse_addr(name: str, value: str) -> IPAddress:
    if "%" in value or "/" in value:
        raise FlowParamError(name, f"invalid {name}: an IPv4 or IPv6 address is required")
    try:
        return ip_address(value.strip("[]") if value.startswith("[") else value)
    except ValueError:
        raise FlowParamError(name, f"invalid {name}: an IPv4 or IPv6 address is required") from None


def parse_port(name: str, value: str) -> int:
    if not _PORT.fullmatch(value) or int(value) > 65535:
        raise FlowParamError(name, f"invalid {name}: a port number from 0 to 65535 is required")
    return int(value)


def parse_proto(value: str) -> int:
    name = value.strip().lower()
    if name in PROTO_NAMES:
        return PROTO_NAMES[name]
    if name.isascii() and name.isdigit() and int(name) <= 255:
        return int(name)
    raise FlowParamError("proto", "invalid proto: tcp, udp, sctp or a protocol number from 0 to 255")


def parse_time(value: str, *, utc: bool = True) -> int:
    """A time as integer nanoseconds since the epoch.

    Accepts epoch seconds (fractions exact, as decimal), ISO 8601, and forms
    like ``2001-01-01 5:01pm``. A time without zone is UTC, or local when
    ``utc`` is false. Raises ValueError when it cannot be read.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty time")
    if _EPOCH.fullmatch(text):
        # Digits, not a float: 1424966400.300000001 is exact; digits past the nanosecond are dropped.
        seconds, _, fraction = text.partition(".")
        return int(seconds) * _NS + int(fraction[:9].ljust(9, "0"))
    extra_ns = 0
    match = _FRACTION.search(text)
    if match:
        digits = match.group(1)
        extra_ns = int(digits[:9].ljust(9, "0"))
        text = text[: match.start()] + text[match.end() :]
    try:
        when = _parse_calendar_time(text, utc=utc)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC) if utc else when.astimezone()
        epoch_s = (when - _EPOCH_START) // timedelta(seconds=1)
    except (ValueError, OverflowError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return epoch_s * _NS + extra_ns


def _parse_calendar_time(text: str, *, utc: bool) -> datetime:
    """Read a calendar time the way the seed's Ruby ``Time.parse`` did.

    Date parts missing above the first one given come from today (``5pm`` is
    today at 17:00); parts missing below it are their minimum (``2015-02`` is
    the 1st of February).
    """
    text = _NAMED_OFFSET.sub("", text)
    low = dateparser.parse(text, default=datetime(1970, 1, 1), tzinfos=_zone)
    high = dateparser.parse(text, default=datetime(1971, 2, 2), tzinfos=_zone)
    given = (low.year == high.year, low.month == high.month, low.day == high.day)
    if given[0]:
        return low
    top = given.index(True) if any(given) else len(given)
    today = datetime.now(UTC) if utc else datetime.now()
    year, month, day = (today.year, today.month, today.day)[:top] + (low.year, low.month, low.day)[top:]
    return low.replace(year=year, month=month, day=day)


def _zone(name: str | None, offset: int | None) -> int | tzinfo | None:
    """dateutil's ``tzinfos`` hook: a numeric offset as given, a known zone name, or ValueError."""
    if offset is not None:
        return offset
    if name is None:
        return None  # no zone given
    if name.upper() in _ZONE_HOURS:
        return _ZONE_HOURS[name.upper()] * 3600
    if name in time.tzname:
        return tz.tzlocal()  # this host's own zone by its name, as dateutil takes it
    raise ValueError(f"unknown time zone {name!r}")


def parse_flow_query(params: Mapping[str, str], *, utc: bool, max_window: int) -> FlowQuery:
    """Validate the seed's /data.pcap parameters into a FlowQuery."""
    missing = [name for name in FLOW_PARAMS[:6] if not params.get(name, "").strip()]
    if missing:
        raise FlowParamError(missing[0], f"missing parameter: {', '.join(missing)}")
    a = parse_addr("src_addr", params["src_addr"].strip())
    a_port = parse_port("src_port", params["src_port"].strip())
    b = parse_addr("dst_addr", params["dst_addr"].strip())
    b_port = parse_port("dst_port", params["dst_port"].strip())
    proto = parse_proto(params["proto"]) if params.get("proto", "").strip() else None
    try:
        start_ns = parse_time(params["start_time"], utc=utc)
    except ValueError:
        raise FlowParamError("start_time", f"invalid start time (start_time): {_TIME_FORMS}") from None
    try:
        end_ns = parse_time(params["end_time"], utc=utc)
    except ValueError:
        raise FlowParamError("end_time", f"invalid end time (end_time): {_TIME_FORMS}") from None
    if start_ns < 0:
        raise FlowParamError("start_time", "invalid start time (start_time): before 1970")
    if end_ns > _LATEST_NS:
        raise FlowParamError("end_time", "invalid end time (end_time): after the year 9998")
    if end_ns < start_ns:
        raise FlowParamError("end_time", "invalid end time (end_time): before the start time")
    if end_ns - start_ns > max_window * _NS:
        raise FlowParamError(
            "end_time", f"time window too long (start_time to end_time): at most {max_window} seconds"
        )
    return FlowQuery(a=a, a_port=a_port, b=b, b_port=b_port, start_ns=start_ns, end_ns=end_ns, proto=proto)
