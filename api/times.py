"""Times of a query, read in exactly one way or refused (docs/SPEC.md "Selecting packets", Times).

Accepted, case-insensitive, surrounding blanks ignored:

- epoch seconds, the fraction exact to the nanosecond (``1424966400.300000001``; digits past the
  nanosecond are dropped, never rounded up);
- ``now``; relative to now: ``-15m``, ``-1h30m``, ``now-2h``, ``15m ago``, ``2 hours ago``, in
  units of s/sec/second(s), m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s);
- a calendar date, optionally with a time and a zone: ``2015-02-26``, ``2015-02`` (the 1st),
  ``2015/02/26``, ``20150226T160000Z``, ``26 Feb 2015``, ``Feb 26, 2015``, an optional leading
  weekday that must agree with the date (``Thu, 26 Feb 2015 08:00:00 PST``); times
  ``16:00[:00[.fraction]]`` or ``4pm``/``5:01pm``, after a blank or ``T``;
- a time alone (``5pm``, ``17:30``): today, as the seed's Ruby ``Time.parse`` read it;
- zones: ``Z``, ``±HH[:MM]``, ``UTC``/``GMT``/``UT`` with an optional offset east of UTC
  (``UTC+3``), the RFC 2822 names (EST, PDT, ...), or this host's own zone names.

A time without a zone is UTC, or this host's local time when ``utc`` is false; a local time that
a clock change makes ambiguous or skips is refused. Everything else is refused, in particular
what an ordinary date parser would guess at: ``-10m`` without "now" is not 00:10 but ten minutes
ago, ``1h`` is neither 01:00 nor an hour ago, ``Monday``, ``-5``, ``at 5`` and day/month orders
like ``01/12/2026`` are refused.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np

NS = 1_000_000_000
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)

_EPOCH = re.compile(r"[0-9]{1,11}(?:\.[0-9]+)?")
_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1}
_UNITS |= {"m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60}
_UNITS |= {"h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600}
_UNITS |= {"d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}
_SPAN = r"(?:[0-9]{1,9}\s*[a-z]+\s*)+"
_BEFORE_NOW = re.compile(rf"(?:now\s*)?-\s*({_SPAN})")
_AGO = re.compile(rf"({_SPAN})ago")
_SPAN_PART = re.compile(r"([0-9]{1,9})\s*([a-z]+)\s*")
_BARE_SPAN = re.compile(rf"[+]?\s*{_SPAN}")
_DAY_MONTH = re.compile(r"[0-9]{1,2}[/.][0-9]{1,2}[/.][0-9]{2,4}\b")

_MONTHS = {
    name: number
    for number, names in enumerate(
        (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",)),
        start=1,
    )
    for name in names
}
_MONTHS |= {"jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9}
_MONTHS |= {"september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY = re.compile(r"(mon|tue|wed|thu|fri|sat|sun)(?:day|sday|nesday|rsday|urday)?\.?,?\s+")
_DATES = (
    re.compile(r"(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})(?:-(?P<d>[0-9]{1,2}))?"),
    re.compile(r"(?P<y>[0-9]{4})/(?P<m>[0-9]{1,2})/(?P<d>[0-9]{1,2})"),
    re.compile(r"(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})(?=t)"),
    re.compile(r"(?P<d>[0-9]{1,2})[ -](?P<mon>[a-z]{3,9})\.?[ -](?P<y>[0-9]{4})"),
    re.compile(r"(?P<mon>[a-z]{3,9})\.? (?P<d>[0-9]{1,2})(?:st|nd|rd|th)?,? (?P<y>[0-9]{4})"),
)
_AMPM = r"(?:\s*(?P<ampm>[ap])\.?m\.?)"
_TIMES = (
    re.compile(r"(?P<H>[0-9]{1,2}):(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2})(?:[.,](?P<f>[0-9]+))?)?" + _AMPM + "?"),
    re.compile(r"(?P<H>[0-9]{1,2})" + _AMPM),
)
_BASIC_TIME = re.compile(r"(?P<H>[0-9]{2})(?P<M>[0-9]{2})(?:(?P<S>[0-9]{2})(?:[.,](?P<f>[0-9]+))?)?")
_OFFSET = re.compile(r"(?P<sign>[+-])(?P<hh>[0-9]{2}):?(?P<mm>[0-9]{2})?")
_NAMED_OFFSET = re.compile(r"(?:utc|gmt|ut)\s*(?P<sign>[+-])(?P<hh>[0-9]{1,2})(?::?(?P<mm>[0-9]{2}))?")
_ZONE_NAME = re.compile(r"[a-z]{1,5}")
# Zone names with one fixed offset (RFC 2822's, which Ruby's Time.parse reads too), in hours.
_ZONE_HOURS = {"z": 0, "ut": 0, "utc": 0, "gmt": 0, "est": -5, "edt": -4, "cst": -6, "cdt": -5}
_ZONE_HOURS |= {"mst": -7, "mdt": -6, "pst": -8, "pdt": -7}
_LOCAL = object()  # the zone is this host's own, by its name


class TimeError(ValueError):
    """A time that cannot be read in exactly one way; the message says which forms are."""


FORMS = (
    "use epoch seconds, ISO 8601 (2015-02-26T16:00:00Z), a form like 2001-01-01 5:01pm, now, -15m or 15m ago"
)


def parse_time(value: str, *, utc: bool = True, now_ns: int | None = None) -> int:
    """A time as integer nanoseconds since the epoch; TimeError when it cannot be read in exactly one way.

    ``now_ns`` is the instant ``now`` and relative times count from (default: the clock).
    """
    text = " ".join(value.strip().lower().split())
    if not text:
        raise TimeError("empty time")
    if _EPOCH.fullmatch(text):
        # Digits, not a float: 1424966400.300000001 is exact; digits past the nanosecond are dropped.
        seconds, _, fraction = text.partition(".")
        return int(seconds) * NS + int(fraction[:9].ljust(9, "0"))
    now = time.time_ns() if now_ns is None else now_ns
    if text == "now":
        return now
    relative = _BEFORE_NOW.fullmatch(text) or _AGO.fullmatch(text)
    if relative:
        return now - _span_seconds(relative.group(1)) * NS
    if _BARE_SPAN.fullmatch(text) and all(u in _UNITS for _, u in _SPAN_PART.findall(text.lstrip("+ "))):
        raise TimeError(f"a span needs a direction: -{text.lstrip('+ ')} or {text.lstrip('+ ')} ago")
    if _DAY_MONTH.match(text):
        raise TimeError("day and month in that order can be read two ways: write the date as YYYY-MM-DD")
    return _calendar(text, utc=utc, now_ns=now)


def _span_seconds(text: str) -> int:
    total, at = 0, 0
    for part in _SPAN_PART.finditer(text):
        if part.start() != at or part.group(2) not in _UNITS:
            raise TimeError(f"unknown unit {part.group(2)!r}: s, m, h, d or w")
        total += int(part.group(1)) * _UNITS[part.group(2)]
        at = part.end()
    return total


def _calendar(text: str, *, utc: bool, now_ns: int) -> int:
    """A calendar date and/or clock time with an optional zone, as ns since the epoch."""
    at, weekday = 0, None
    match = _WEEKDAY.match(text)
    if match:
        weekday, at = _WEEKDAYS.index(match.group(1)), match.end()
    day, at = _date(text, at)
    if weekday is not None and day is None:
        raise TimeError("a weekday alone names no date: give the date")
    clock = None
    if day is None:
        clock, at = _clock(text, at, basic=False)
        if clock is None:
            raise TimeError(FORMS)
    elif at < len(text) and text[at] in " t":
        clock, after = _clock(text, at + 1, basic=text[at] == "t")
        if clock is None and text[at] == "t":
            raise TimeError("a time is expected after 'T'")
        at = after if clock is not None else at
    zone, at = _zone(text, at)
    if at != len(text):
        raise TimeError(f"cannot read {text[at:]!r}: {FORMS}")
    hours, minutes, seconds, fraction_ns = clock or (0, 0, 0, 0)
    if day is None:
        day = _today(zone, utc=utc, now_ns=now_ns)
    if weekday is not None and day.weekday() != weekday:
        raise TimeError(f"{day.isoformat()} is a {day.strftime('%A')}")
    try:
        naive = datetime(day.year, day.month, day.day, hours, minutes, seconds)
    except ValueError as exc:
        raise TimeError(str(exc)) from None
    return _epoch_ns(naive, zone, utc=utc) + fraction_ns


def _date(text: str, at: int) -> tuple[date | None, int]:
    for form in _DATES:
        match = form.match(text, at)
        if not match:
            continue
        parts = match.groupdict()
        if "mon" in parts:
            if parts["mon"] not in _MONTHS:
                raise TimeError(f"unknown month {parts['mon']!r}")
            month = _MONTHS[parts["mon"]]
        else:
            month = int(parts["m"])
        try:
            return date(int(parts["y"]), month, int(parts["d"] or 1)), match.end()
        except ValueError as exc:
            raise TimeError(str(exc)) from None
    return None, at


def _clock(text: str, at: int, *, basic: bool) -> tuple[tuple[int, int, int, int] | None, int]:
    """(hours, minutes, seconds, fraction ns) of a clock time at ``at``, and where it ends."""
    forms = (_BASIC_TIME, *_TIMES) if basic else _TIMES
    for form in forms:
        match = form.match(text, at)
        if not match:
            continue
        parts = match.groupdict()
        hours = int(parts["H"])
        ampm = parts.get("ampm")
        if ampm:
            if not 1 <= hours <= 12:
                raise TimeError(f"{hours}{ampm}m is no time of day")
            hours = hours % 12 + (12 if ampm == "p" else 0)
        minutes, seconds = int(parts.get("M") or 0), int(parts.get("S") or 0)
        if hours > 23 or minutes > 59 or seconds > 59:
            raise TimeError(f"{match.group(0)!r} is no time of day")
        fraction = parts.get("f") or ""
        return (hours, minutes, seconds, int(fraction[:9].ljust(9, "0"))), match.end()
    return None, at


def _zone(text: str, at: int) -> tuple[timezone | object | None, int]:
    """The zone written at ``at`` (after optional blanks): a fixed offset, the local zone, or None."""
    start = at + 1 if text[at : at + 1] == " " else at
    for form in (_NAMED_OFFSET, _OFFSET):
        match = form.match(text, start)
        if match:
            hours, minutes = int(match.group("hh")), int(match.group("mm") or 0)
            if hours > 23 or minutes > 59:
                raise TimeError(f"invalid zone offset {match.group(0)!r}")
            sign = -1 if match.group("sign") == "-" else 1
            return timezone(sign * timedelta(hours=hours, minutes=minutes)), match.end()
    match = _ZONE_NAME.match(text, start)
    if match and match.end() == len(text):
        name = match.group(0)
        if name in _ZONE_HOURS:
            return timezone(timedelta(hours=_ZONE_HOURS[name])), match.end()
        if name in (zone.lower() for zone in time.tzname):
            return _LOCAL, match.end()
        raise TimeError(f"unknown time zone {name.upper()!r}: give an offset like +02:00")
    return None, at


def _today(zone, *, utc: bool, now_ns: int) -> date:
    now = datetime.fromtimestamp(now_ns // NS, UTC)
    if isinstance(zone, timezone):
        return now.astimezone(zone).date()
    if zone is _LOCAL or not utc:
        return now.astimezone().date()
    return now.date()


def _epoch_ns(naive: datetime, zone, *, utc: bool) -> int:
    if isinstance(zone, timezone):
        when = naive.replace(tzinfo=zone)
    elif zone is None and utc:
        when = naive.replace(tzinfo=UTC)
    else:
        when = naive.astimezone()
        if naive.replace(fold=1).astimezone().utcoffset() != when.utcoffset():
            raise TimeError(f"{naive} local time is ambiguous or skipped by a clock change: give a zone")
    return (when - _EPOCH_START) // timedelta(microseconds=1) * 1000


def format_epoch(ns: int) -> str:
    """Epoch seconds with all nine fraction digits: the exact form a node reads back."""
    return f"{ns // NS}.{ns % NS:09d}"


def format_iso(ns: int, *, short: bool = False) -> str:
    """ISO 8601 in UTC with nanoseconds: ``2026-12-01T05:40:00.123456789Z``.

    ``short`` drops the fraction's trailing zeros, and a zero fraction, as log lines write a time
    (``2026-12-01T05:40:00Z``, ``...T05:40:00.5Z``); the value stays exact.
    """
    seconds, fraction = divmod(ns, NS)
    text = (_EPOCH_START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if not short:
        return f"{text}.{fraction:09d}Z"
    return f"{text}.{fraction:09d}".rstrip("0").rstrip(".") + "Z"


def format_iso_many(ns: np.ndarray | list[int]) -> list[str]:
    """``format_iso`` of each of many times (int64 nanoseconds), written by numpy in one call."""
    values = np.asarray(ns, dtype=np.int64)
    texts = np.datetime_as_string(values.astype("datetime64[ns]"), unit="ns").tolist()
    shown = [text + "Z" for text in texts]
    for at in np.flatnonzero(values == np.iinfo(np.int64).min).tolist():  # numpy's "not a time"
        shown[at] = format_iso(int(values[at]))
    return shown


def window_text(start_ns: int, end_ns: int) -> str:
    """The ``X-PAR-Window`` value: ``<start>/<end>``, ISO 8601 intervals in UTC to the ns."""
    return f"{format_iso(start_ns)}/{format_iso(end_ns)}"
