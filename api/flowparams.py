"""Validation of /data.pcap and /flows parameters, shared by node and collector (docs/SPEC.md "Selecting packets").

The collector validates exactly as the node does, so a bad request is refused with a 400 before
any node round trip; it then hands the node ``selection_params(selection)``, the same question in
forms the node reads in exactly one way. Times are read by ``api.times``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from api.times import NS, TimeError, format_epoch, parse_time, window_text
from engine.dissection.communityid import parse_community_id
from engine.selection.selectors import LATEST_EPOCH, PROTO_NAMES, FlowQuery, IPNetwork, Selection

SELECTORS = ("src_addr", "src_port", "dst_addr", "dst_port", "proto", "community_id")
TIME_PARAMS = ("start_time", "end_time")
ANSWER_PARAMS = ("format", "limit_packets", "limit_bytes", "node_id", "api_key")
LISTING_ONLY_PARAMS = ("limit", "sort", "output")
# Every parameter /data.pcap knows, the seed's first and in its order.
PCAP_PARAMS = SELECTORS[:4] + TIME_PARAMS + SELECTORS[4:] + ANSWER_PARAMS
FLOWS_PARAMS = PCAP_PARAMS + LISTING_ONLY_PARAMS  # every parameter /flows knows
FLOW_PARAMS = PCAP_PARAMS  # the older name

FORMATS = ("pcap", "pcapng")
SORTS = ("first", "last", "-bytes", "-packets")
OUTPUTS = ("json", "csv")
LISTING_LIMIT, MAX_LISTING_LIMIT = 1000, 100_000
MIN_LIMIT_BYTES = 24  # a classic pcap's file header: no answer is shorter

# ASCII digits only: \d would also take other scripts' digits, which int() reads.
_PORT = re.compile(r"[0-9]{1,5}")
_COUNT = re.compile(r"[0-9]{1,19}")
_PREFIX = re.compile(r"[0-9]{1,3}")
_LATEST_NS = LATEST_EPOCH * NS

__all__ = [
    "FLOWS_PARAMS",
    "FLOW_PARAMS",
    "PCAP_PARAMS",
    "SELECTORS",
    "AnswerOptions",
    "FlowParamError",
    "ListingOptions",
    "parse_answer_options",
    "parse_flow_query",
    "parse_listing_options",
    "parse_selection",
    "parse_time",
    "selection_params",
    "window_text",
]


class FlowParamError(ValueError):
    """A parameter is missing, unknown or invalid; the message names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class AnswerOptions:
    """How a /data.pcap answer is written: its format and where it may stop."""

    format: str = "pcap"  # "pcap" (pcapng only when link types mix) or "pcapng"
    limit_packets: int | None = None
    limit_bytes: int | None = None


@dataclass(frozen=True)
class ListingOptions:
    """How a /flows answer is ordered, cut and written."""

    sort: str = "first"
    limit: int = LISTING_LIMIT
    output: str = "json"


# ---------------------------------------------------------------- single values


def _value(params: Mapping[str, str], name: str) -> str | None:
    """The parameter's value, stripped; None when absent or blank; given twice is refused."""
    getlist = getattr(params, "getlist", None)
    if getlist is not None and len(getlist(name)) > 1:
        raise FlowParamError(name, f"invalid {name}: given more than once")
    value = params.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def parse_network(name: str, value: str) -> IPNetwork:
    """An address (a /32 or /128) or a network in CIDR form; a zone, a mask or host bits are refused."""
    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    address, slash, prefix = text.partition("/")
    required = f"invalid {name}: an IPv4 or IPv6 address or a network like 10.1.0.0/16 is required"
    if "%" in text or (slash and not _PREFIX.fullmatch(prefix)):
        raise FlowParamError(name, required)
    try:
        host = ip_address(address)
    except ValueError:
        raise FlowParamError(name, required) from None
    if not slash:
        return ip_network(host)
    if int(prefix) > host.max_prefixlen:
        raise FlowParamError(
            name, f"invalid {name}: a prefix length from 0 to {host.max_prefixlen} is required"
        )
    try:
        return ip_network(f"{host}/{int(prefix)}")
    except ValueError:
        network = ip_network(f"{host}/{int(prefix)}", strict=False)
        raise FlowParamError(
            name, f"invalid {name}: {value} has host bits set; the network is {network}"
        ) from None


def parse_addr(name: str, value: str):
    """A single address (the seed's form): a network is refused."""
    network = parse_network(name, value)
    if network.num_addresses != 1 or "/" in value:
        raise FlowParamError(name, f"invalid {name}: an IPv4 or IPv6 address is required")
    return network.network_address


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
    raise FlowParamError(
        "proto", "invalid proto: tcp, udp, sctp, icmp, icmp6 or a protocol number from 0 to 255"
    )


def parse_community(value: str) -> str:
    try:
        parse_community_id(value)
    except ValueError as exc:
        raise FlowParamError(
            "community_id", f"invalid community_id: {exc} (as Zeek, Suricata and Arkime print it)"
        )
    return value


def _count(params: Mapping[str, str], name: str, *, least: int = 1, most: int = 2**63 - 1) -> int | None:
    value = _value(params, name)
    if value is None:
        return None
    if not _COUNT.fullmatch(value) or not least <= int(value) <= most:
        raise FlowParamError(name, f"invalid {name}: a whole number from {least} to {most} is required")
    return int(value)


def _choice(params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = _value(params, name)
    if value is None:
        return default
    if value not in choices:
        raise FlowParamError(name, f"invalid {name}: one of {', '.join(choices)}")
    return value


def check_known(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    """Refuse parameters this endpoint does not know, naming them: a typo must not widen a query."""
    unknown = sorted(name for name in params if name not in known)
    if unknown:
        raise FlowParamError(
            unknown[0], f"unknown parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
        )


def check_given(params: Mapping[str, str]) -> None:
    """Refuse parameters given empty, naming them: ``src_addr=`` (an unset variable) must not widen a query.

    ``api_key`` is the authentication's to judge; ``start_time``, required, is then missing.
    """
    judged_elsewhere = ("api_key", "start_time")
    empty = sorted(
        name for name in params if name not in judged_elsewhere and not (params.get(name) or "").strip()
    )
    if empty:
        names = ", ".join(empty)
        raise FlowParamError(
            empty[0],
            f"empty parameter{'s' if len(empty) > 1 else ''}: {names} (leave out a parameter not wanted)",
        )


# ---------------------------------------------------------------- whole requests


def _times(params: Mapping[str, str], *, utc: bool, max_window: int, now_ns: int | None) -> tuple[int, int]:
    start_text = _value(params, "start_time")
    if start_text is None:
        raise FlowParamError("start_time", "missing parameter: start_time")
    end_text = _value(params, "end_time") or "now"
    try:
        start_ns = parse_time(start_text, utc=utc, now_ns=now_ns)
    except TimeError as exc:
        raise FlowParamError("start_time", f"invalid start time (start_time): {exc}") from None
    try:
        end_ns = parse_time(end_text, utc=utc, now_ns=now_ns)
    except TimeError as exc:
        raise FlowParamError("end_time", f"invalid end time (end_time): {exc}") from None
    if start_ns < 0:
        raise FlowParamError("start_time", "invalid start time (start_time): before 1970")
    if end_ns > _LATEST_NS:
        raise FlowParamError("end_time", "invalid end time (end_time): after the year 9998")
    if end_ns < start_ns:
        raise FlowParamError("end_time", "invalid end time (end_time): before the start time")
    if end_ns - start_ns > max_window * NS:
        raise FlowParamError(
            "end_time", f"time window too long (start_time to end_time): at most {max_window} seconds"
        )
    return start_ns, end_ns


def parse_selection(
    params: Mapping[str, str],
    *,
    utc: bool,
    max_window: int,
    known: tuple[str, ...] | None = PCAP_PARAMS,
    now_ns: int | None = None,
) -> Selection:
    """Validate the selectors and window of a request into a Selection; FlowParamError names what is wrong.

    A parameter given empty is refused by name. ``known`` lists the parameters the endpoint takes
    (None: do not check); ``now_ns`` is the instant ``now`` and relative times count from
    (default: the clock, read once).
    """
    if known is not None:
        check_known(params, known)
    check_given(params)
    given = {name: _value(params, name) for name in SELECTORS}
    src = parse_network("src_addr", given["src_addr"]) if given["src_addr"] else None
    dst = parse_network("dst_addr", given["dst_addr"]) if given["dst_addr"] else None
    src_port = parse_port("src_port", given["src_port"]) if given["src_port"] else None
    dst_port = parse_port("dst_port", given["dst_port"]) if given["dst_port"] else None
    proto = parse_proto(given["proto"]) if given["proto"] else None
    community = parse_community(given["community_id"]) if given["community_id"] else None
    start_ns, end_ns = _times(params, utc=utc, max_window=max_window, now_ns=now_ns)
    return Selection(
        start_ns=start_ns,
        end_ns=end_ns,
        src=src,
        dst=dst,
        src_port=src_port,
        dst_port=dst_port,
        proto=proto,
        community_id=community,
    )


def parse_flow_query(params: Mapping[str, str], *, utc: bool, max_window: int) -> FlowQuery:
    """The seed's request: all four of src_addr, src_port, dst_addr, dst_port, single addresses."""
    required = ("src_addr", "src_port", "dst_addr", "dst_port", "start_time", "end_time")
    missing = [name for name in required if _value(params, name) is None]
    if missing:
        raise FlowParamError(missing[0], f"missing parameter: {', '.join(missing)}")
    for name in ("src_addr", "dst_addr"):
        parse_addr(name, params[name].strip())
    s = parse_selection(params, utc=utc, max_window=max_window, known=None)
    assert s.src is not None and s.dst is not None and s.src_port is not None and s.dst_port is not None
    a, b = s.src.network_address, s.dst.network_address
    return FlowQuery(a, s.src_port, b, s.dst_port, s.start_ns, s.end_ns, s.proto)


def parse_answer_options(params: Mapping[str, str]) -> AnswerOptions:
    """``format``, ``limit_packets``, ``limit_bytes`` of a /data.pcap request."""
    return AnswerOptions(
        format=_choice(params, "format", FORMATS, "pcap"),
        limit_packets=_count(params, "limit_packets"),
        limit_bytes=_count(params, "limit_bytes", least=MIN_LIMIT_BYTES),
    )


def parse_listing_options(params: Mapping[str, str]) -> ListingOptions:
    """``sort``, ``limit``, ``output`` of a /flows request."""
    limit = _count(params, "limit", most=MAX_LISTING_LIMIT)
    return ListingOptions(
        sort=_choice(params, "sort", SORTS, "first"),
        limit=LISTING_LIMIT if limit is None else limit,
        output=_choice(params, "output", OUTPUTS, "json"),
    )


def _network_text(network: IPv4Network | IPv6Network) -> str:
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def selection_params(selection: Selection) -> dict[str, str]:
    """The node's parameters for a validated selection: exact forms (CIDR, epoch seconds to the ns)."""
    s = selection
    values = {
        "src_addr": None if s.src is None else _network_text(s.src),
        "src_port": s.src_port,
        "dst_addr": None if s.dst is None else _network_text(s.dst),
        "dst_port": s.dst_port,
        "start_time": format_epoch(s.start_ns),
        "end_time": format_epoch(s.end_ns),
        "proto": s.proto,
        "community_id": s.community_id,
    }
    return {name: str(value) for name, value in values.items() if value is not None}


def answer_params(options: AnswerOptions) -> dict[str, str]:
    """The node's parameters for the answer options (only those that differ from the defaults)."""
    params = {}
    if options.format != "pcap":
        params["format"] = options.format
    for name in ("limit_packets", "limit_bytes"):
        value = getattr(options, name)
        if value is not None:
            params[name] = str(value)
    return params
