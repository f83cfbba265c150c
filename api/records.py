"""A Suricata EVE record or a Zeek conn.log record as a query (SPEC "From an alert to its packets").

``record_query(body)`` reads one JSON record, strictly, and returns the parameters the equivalent
``GET /data.pcap`` or ``GET /flows`` takes: the flow (its Community ID when the record carries one,
else its addresses, ports and protocol) and the window:

- Suricata: ``flow.start`` .. ``flow.end`` widened by ``FLOW_MARGIN`` on each side; a record whose
  ``flow`` has a start and no end (an alert, an http or dns record) runs to ``AFTER`` past its
  ``timestamp``; a record without ``flow.start``: ``BEFORE`` before to ``AFTER`` after ``timestamp``.
- Zeek: ``ts`` .. ``ts + duration`` widened by ``FLOW_MARGIN``; without ``duration``, up to
  ``AFTER`` past ``ts``.

The margin around a flow's own bounds covers the microseconds Suricata and Zeek print against a
capture stamped to the nanosecond. A Community ID that its record's own 5-tuple does not hash to
(Suricata 7.0 orders two equal addresses by byte-swapped ports: every loopback-to-loopback flow) is
replaced by the ID of that 5-tuple, and the answer says so (``RecordQuery.note``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from ipaddress import IPv4Address, IPv6Address, ip_address

from api.times import NS, TimeError, format_iso, parse_time
from engine.dissection.communityid import community_id, parse_community_id
from engine.dissection.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP

MAX_RECORD_BYTES = 1 << 20  # an EVE record with its payload and packet fields stays far below
FLOW_MARGIN = 1 * NS
BEFORE = 5 * 60 * NS
AFTER = 5 * 60 * NS

# Suricata's and Zeek's names of the protocols (Suricata prints ICMPv6 as IPv6-ICMP).
_PROTOCOLS = {
    "tcp": PROTO_TCP,
    "udp": PROTO_UDP,
    "sctp": PROTO_SCTP,
    "icmp": PROTO_ICMP,
    "ipv6-icmp": PROTO_ICMPV6,
    "icmpv6": PROTO_ICMPV6,
    "icmp6": PROTO_ICMPV6,
}
_PORTED = (PROTO_TCP, PROTO_UDP, PROTO_SCTP)
_ICMP = (PROTO_ICMP, PROTO_ICMPV6)
_PROTO_PARAM = {
    PROTO_TCP: "tcp",
    PROTO_UDP: "udp",
    PROTO_SCTP: "sctp",
    PROTO_ICMP: "icmp",
    PROTO_ICMPV6: "icmp6",
}

__all__ = ["MAX_RECORD_BYTES", "RecordError", "RecordQuery", "parse_record", "record_query"]


class RecordError(ValueError):
    """The body is not one readable Suricata or Zeek record naming a flow; the message says what is missing."""


@dataclass(frozen=True)
class RecordQuery:
    """What a record asks, as the GET's parameters (selectors and window), and what was done to it."""

    kind: str  # "suricata" or "zeek"
    params: dict[str, str]
    note: str | None = None


# ---------------------------------------------------------------- strict JSON


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    record: dict[str, object] = {}
    for key, value in pairs:
        if key in record:
            raise ValueError(f"the key {key!r} is given twice")
        record[key] = value
    return record


def parse_record(body: bytes) -> dict[str, object]:
    """One JSON object, read strictly: UTF-8, no duplicate key, no NaN, nothing after it."""
    if len(body) > MAX_RECORD_BYTES:
        raise RecordError(f"record too large: at most {MAX_RECORD_BYTES} bytes")
    if not body.strip():
        raise RecordError(
            "empty body: one Suricata EVE record or one Zeek conn.log record (JSON) is required"
        )
    try:
        text = body.decode("utf-8")
        record = json.loads(
            text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_unique_keys
        )
    except UnicodeDecodeError:
        raise RecordError("invalid record: the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            raise RecordError("invalid record: one JSON record is taken, the body holds more") from None
        raise RecordError(
            f"invalid record: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise RecordError("invalid record: nested too deeply") from None
    except ValueError as exc:  # a duplicate key, NaN, a number too long to read
        raise RecordError(f"invalid record: {exc}") from None
    if not isinstance(record, dict):
        raise RecordError(
            "invalid record: a JSON object is required (one Suricata EVE or Zeek conn.log record)"
        )
    return record


# ---------------------------------------------------------------- fields


def _address(record: Mapping[str, object], name: str) -> IPv4Address | IPv6Address | None:
    value = record.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str) or "%" in value:
            raise ValueError
        return ip_address(value.strip())
    except ValueError:
        raise RecordError(f"invalid {name} in the record: an IPv4 or IPv6 address is required") from None


def _number(record: Mapping[str, object], name: str, most: int) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise RecordError(f"invalid {name} in the record: a whole number from 0 to {most} is required")
    return value


def _proto(record: Mapping[str, object], name: str) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _PROTOCOLS:
            return _PROTOCOLS[text]
        if text.isascii() and text.isdigit() and int(text) <= 255:
            return int(text)
        if text == "unknown_transport":  # Zeek: some other IP protocol
            return None
    raise RecordError(f"invalid {name} in the record: tcp, udp, sctp, icmp, ipv6-icmp or a number 0-255")


def _time(record: Mapping[str, object], name: str) -> int | None:
    """A record's time (ISO 8601 text or epoch seconds) as nanoseconds."""
    value = record.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return parse_time(value)
        if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and 0 <= value < 10**11:
            return int(Decimal(value) * NS)
    except (TimeError, InvalidOperation):
        pass
    raise RecordError(f"invalid {name} in the record: an ISO 8601 time or epoch seconds is required")


def _seconds(record: Mapping[str, object], name: str) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and 0 <= value < 10**9:
        return int(Decimal(value) * NS)
    raise RecordError(f"invalid {name} in the record: a number of seconds is required")


def _community(record: Mapping[str, object]) -> str | None:
    value = record.get("community_id")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parse_community_id(value.strip())
            return value.strip()
        except ValueError:
            pass
    raise RecordError("invalid community_id in the record: 1:<base64> (Community ID v1, seed 0) is required")


# ---------------------------------------------------------------- the two producers


@dataclass
class _Flow:
    """A record's flow and times, before they are turned into parameters."""

    src: IPv4Address | IPv6Address | None
    src_port: int | None
    dst: IPv4Address | IPv6Address | None
    dst_port: int | None
    proto: int | None
    community: str | None
    start_ns: int | None  # the flow's first packet, when the record says
    end_ns: int | None  # its last packet, when the record says
    at_ns: int | None  # when the record was written (its event), when no flow bound is known


def _suricata(record: Mapping[str, object]) -> _Flow:
    flow = record.get("flow")
    if flow is not None and not isinstance(flow, dict):
        raise RecordError("invalid flow in the record: an object is required")
    proto = _proto(record, "proto")
    if proto in _ICMP:  # the message's type and code stand for the ports
        sport, dport = _number(record, "icmp_type", 255), _number(record, "icmp_code", 255)
    else:
        sport, dport = _number(record, "src_port", 65535), _number(record, "dest_port", 65535)
    return _Flow(
        src=_address(record, "src_ip"),
        src_port=sport,
        dst=_address(record, "dest_ip"),
        dst_port=dport,
        proto=proto,
        community=_community(record),
        start_ns=_time(flow, "start") if flow else None,
        end_ns=_time(flow, "end") if flow else None,
        at_ns=_time(record, "timestamp"),
    )


def _zeek(record: Mapping[str, object]) -> _Flow:
    nested = record.get("id")
    if isinstance(nested, dict):  # a JSON writer that nests the conn_id record
        ids: Mapping[str, object] = {f"id.{name}": value for name, value in nested.items()}
    else:
        ids = record
    src, dst = _address(ids, "id.orig_h"), _address(ids, "id.resp_h")
    proto = _proto(record, "proto")
    if proto == PROTO_ICMP and isinstance(src, IPv6Address):
        proto = PROTO_ICMPV6  # Zeek names ICMPv6 "icmp" too
    start = _time(record, "ts")
    duration = _seconds(record, "duration")
    return _Flow(
        src=src,
        src_port=_number(ids, "id.orig_p", 65535),
        dst=dst,
        dst_port=_number(ids, "id.resp_p", 65535),
        proto=proto,
        community=_community(record),
        start_ns=start,
        end_ns=None if start is None or duration is None else start + duration,
        at_ns=start,
    )


def _kind(record: Mapping[str, object]) -> str:
    if "id.orig_h" in record or isinstance(record.get("id"), dict) or "uid" in record:
        return "zeek"
    if any(name in record for name in ("src_ip", "dest_ip", "event_type", "flow_id")):
        return "suricata"
    raise RecordError(
        "not a Suricata EVE record (src_ip, dest_ip, proto, timestamp, ...) nor a Zeek conn.log record "
        "(id.orig_h, id.resp_h, proto, ts, ...)"
    )


# ---------------------------------------------------------------- parameters


def _own_community_id(flow: _Flow) -> str | None:
    """The Community ID of the record's 5-tuple, when it has a whole one."""
    src, dst, sport, dport, proto = flow.src, flow.dst, flow.src_port, flow.dst_port, flow.proto
    if src is None or dst is None or sport is None or dport is None or proto not in (*_PORTED, *_ICMP):
        return None
    if src.version != dst.version:
        return None
    return community_id(src.packed, sport, dst.packed, dport, proto)


def _selectors(flow: _Flow, kind: str) -> tuple[dict[str, str], str | None]:
    """The selectors of the flow, and a note when the record's Community ID was replaced."""
    computed = _own_community_id(flow)
    if flow.community is not None:
        if computed is None or computed == flow.community:
            return {"community_id": flow.community}, None
        note = (
            f"the record's community_id {flow.community} is not the Community ID of its own 5-tuple; "
            f"{computed}, computed from it, is asked (Suricata 7.0 and older order two equal addresses by "
            "byte-swapped ports)"
        )
        return {"community_id": computed}, note
    src_name, dst_name = ("id.orig_h", "id.resp_h") if kind == "zeek" else ("src_ip", "dest_ip")
    if flow.src is None or flow.dst is None:
        missing = [name for name, value in ((src_name, flow.src), (dst_name, flow.dst)) if value is None]
        raise RecordError(
            f"the record names no flow: community_id, or both {src_name} and {dst_name}, is required "
            f"({' and '.join(missing)} missing)"
        )
    ported = flow.proto in _PORTED and flow.src_port is not None and flow.dst_port is not None
    params = {"src_addr": str(flow.src)}
    if ported:
        params["src_port"] = str(flow.src_port)
    params["dst_addr"] = str(flow.dst)
    if ported:
        params["dst_port"] = str(flow.dst_port)
    if flow.proto is not None:
        params["proto"] = _PROTO_PARAM.get(flow.proto, str(flow.proto))
    return params, None


def _window(flow: _Flow, kind: str) -> dict[str, str]:
    """The window the record's times give, or none: the query string must then give start_time."""
    if flow.start_ns is not None:
        start = flow.start_ns - FLOW_MARGIN
        if flow.end_ns is not None:
            end = max(flow.end_ns, flow.start_ns) + FLOW_MARGIN
        else:
            end = max(flow.at_ns or flow.start_ns, flow.start_ns) + AFTER
    elif flow.at_ns is not None:
        start, end = flow.at_ns - BEFORE, flow.at_ns + AFTER
    else:
        return {}
    return {"start_time": format_iso(max(start, 0)), "end_time": format_iso(end)}


def record_query(body: bytes) -> RecordQuery:
    """The GET parameters one Suricata EVE or Zeek conn.log record (a JSON body) stands for."""
    record = parse_record(body)
    kind = _kind(record)
    flow = _zeek(record) if kind == "zeek" else _suricata(record)
    selectors, note = _selectors(flow, kind)
    return RecordQuery(kind=kind, params={**selectors, **_window(flow, kind)}, note=note)


def time_fields(kind: str) -> str:
    """The fields a record's window is read from, for the message when it has none."""
    return "ts" if kind == "zeek" else "flow.start or timestamp"
