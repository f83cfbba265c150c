"""The OpenAPI description of the selection parameters (docs/SPEC.md "Selecting packets"), shared by both roles.

What a valid value looks like, with examples; the API also reads what these schemas leave out
(a bracketed IPv6 address, forms like "2001-01-01 5:01pm") and answers anything else with a 400
naming it.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiRequest

_ADDRESS = {
    "type": "string",
    "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}, {"pattern": r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$"}],
    "example": "10.0.0.1",
}
_PORT = {"type": "integer", "minimum": 0, "maximum": 65535, "example": 443}
_TIME = {
    "type": "string",
    "anyOf": [
        {"format": "date-time"},
        {"pattern": r"^[0-9]{1,11}(\.[0-9]{1,9})?$"},
        {"pattern": r"^(now|-[0-9]+[smhdw]|[0-9]+[smhdw] ago)$"},
    ],
    "example": "2015-02-26T16:00:00Z",
}
_PROTO = {
    "type": "string",
    "anyOf": [{"enum": ["tcp", "udp", "sctp", "icmp", "icmp6"]}, {"pattern": "^[0-9]{1,3}$"}],
    "example": "tcp",
}
_COMMUNITY_ID = {
    "type": "string",
    "pattern": "^1:[A-Za-z0-9+/]{27}=$",
    "example": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
}
_COUNT = {"type": "integer", "minimum": 1, "example": 1000}


def _param(name: str, schema: dict, description: str, examples: dict[str, str] | None = None, **kw):
    return OpenApiParameter(
        name,
        schema,
        OpenApiParameter.QUERY,
        description=description,
        examples=[OpenApiExample(summary, value=value) for summary, value in (examples or {}).items()],
        **kw,
    )


TIME_HELP = (
    "epoch seconds (fraction exact to the ns), ISO 8601, a form like `2001-01-01 5:01pm`, `now`, or relative "
    "to now: `-15m`, `-2h`, `-1d`, `-90s`, `15m ago`; without a zone UTC (local time when PAR_UTC=false). "
    "A time that can be read more than one way (`01/12/2026`, `Monday`, `1h`) is refused"
)
SELECTION_PARAMETERS = [
    _param(
        "src_addr",
        _ADDRESS,
        "an address or CIDR network of one end of the flow (either end: see dst_addr)",
        {"a host": "10.1.2.3", "a network": "10.1.0.0/16", "IPv6": "2001:db8::/48"},
    ),
    _param("src_port", _PORT, "the port of the end src_addr names", {"a client port": "51234"}),
    _param(
        "dst_addr",
        _ADDRESS,
        "an address or CIDR network of the other end; a flow matches when one end satisfies every src_* "
        "given and the other every dst_*, whoever sent first",
        {"a server": "192.0.2.7"},
    ),
    _param("dst_port", _PORT, "the port of the other end", {"HTTPS": "443", "SMB": "445"}),
    _param(
        "proto",
        _PROTO,
        "tcp, udp, sctp, icmp, icmp6 or an IP protocol number (0-255); absent: TCP, UDP or SCTP when a port "
        "is given, any protocol otherwise. ICMP ports are the message type and the reply's type or the code",
        {"TCP": "tcp", "ICMPv6": "icmp6", "GRE": "47"},
    ),
    _param(
        "community_id",
        _COMMUNITY_ID,
        "the flow with that Community ID v1 (seed 0), as Zeek, Suricata and Arkime print it",
        {"from a Suricata alert": "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
    ),
    _param(
        "start_time",
        _TIME,
        "start of the window (inclusive): " + TIME_HELP,
        {"ISO 8601": "2015-02-26T16:00:00Z", "the seed's form": "2001-01-01 5:01pm", "relative": "-15m"},
        required=True,
    ),
    _param(
        "end_time",
        _TIME,
        "end of the window (inclusive, default now), at most PAR_MAX_WINDOW seconds after start_time",
        {"now": "now", "epoch": "1424966400.5"},
    ),
]
ANSWER_PARAMETERS = [
    _param(
        "format",
        {"type": "string", "enum": ["pcap", "pcapng"], "default": "pcap"},
        "pcap (classic; pcapng only when link types mix) or pcapng (always; interfaces named after the node)",
    ),
    _param(
        "limit_packets",
        _COUNT,
        "end the answer cleanly after this many packets, in time order; the estimate (and its 413) takes it "
        "into account",
        {"first 1000": "1000"},
    ),
    _param(
        "limit_bytes",
        {**_COUNT, "minimum": 24, "example": 10_000_000},
        "end the answer cleanly before it exceeds this many bytes (headers included), or "
        "PAR_MAX_ANSWER_BYTES if that is smaller: the estimate's 413 gives way to a cut answer. At least 24 "
        "(a pcap's file header); the file header always goes out whole",
        {"10 MB": "10000000"},
    ),
]
LISTING_PARAMETERS = [
    _param(
        "sort",
        {"type": "string", "enum": ["first", "last", "-bytes", "-packets"], "default": "first"},
        "order of the rows: by first or last packet, or the largest flows first",
    ),
    _param("limit", {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000}, "rows at most"),
    _param(
        "output",
        {"type": "string", "enum": ["json", "csv"], "default": "json"},
        "json, or csv (RFC 4180, a header row) for spreadsheets and SIEM imports",
    ),
]
# Response headers (docs/SPEC.md "Selecting packets"), the same on both roles.
WINDOW_HEADER = OpenApiParameter(
    "X-PAR-Window",
    str,
    OpenApiParameter.HEADER,
    response=[200, 404, 413, 502, 503, 504],
    description="the window searched, `<start>/<end>` (ISO 8601, UTC, to the ns): on every answer once the "
    "selection is read, errors included",
)
DAMAGED_HEADER = OpenApiParameter(
    "X-PAR-Damaged",
    str,
    OpenApiParameter.HEADER,
    response=[200],
    description="the damaged capture files of the window, by file name, comma-separated, alike on /data.pcap "
    "and /flows: each was read up to its damage, or left out when nothing in it could be read. A HEAD names "
    "the damage the indexes record. The collector passes a node's on as it is, prefixed `<node id>=` when it "
    "merges several nodes. Absent when nothing is damaged",
)
ESTIMATE_HEADERS = [
    OpenApiParameter(
        f"X-PAR-Estimate-{what.capitalize()}",
        int,
        OpenApiParameter.HEADER,
        response=[200],
        description=f"an upper bound of the answer's {what}, from the indexes, known before its first byte "
        "(the collector: summed over the nodes)",
    )
    for what in ("packets", "bytes")
]
UNINDEXED_HEADER = OpenApiParameter(
    "X-PAR-Estimate-Unindexed",
    str,
    OpenApiParameter.HEADER,
    response=[200],
    description="the capture files without an index yet (the live file), by file name, comma-separated, which "
    "the estimate counts whole: it is then a loose bound. The collector passes a node's on, prefixed "
    "`<node id>=` when it merges several nodes. Absent when every file of the window is indexed",
)
PCAP_HEADERS = [WINDOW_HEADER, *ESTIMATE_HEADERS, UNINDEXED_HEADER, DAMAGED_HEADER]
FLOWS_HEADERS = [WINDOW_HEADER, DAMAGED_HEADER]
PCAP_PARAMETERS = SELECTION_PARAMETERS + ANSWER_PARAMETERS + PCAP_HEADERS
FLOWS_PARAMETERS = SELECTION_PARAMETERS + LISTING_PARAMETERS + FLOWS_HEADERS

# POST /data.pcap and POST /flows: one record as the body (SPEC "From an alert to its packets").
RECORD_WINDOW_PARAMETERS = [
    _param(
        "start_time",
        _TIME,
        "overrides the start of the window the record gives: " + TIME_HELP,
        {"relative": "-1h"},
    ),
    _param(
        "end_time",
        _TIME,
        "overrides the end of the window the record gives",
        {"now": "now"},
    ),
]
RECORD_HEADERS = [
    OpenApiParameter(
        "X-PAR-Query",
        str,
        OpenApiParameter.HEADER,
        response=True,
        description="the query string of the GET this record stands for (the key left out), on every answer "
        "to a readable record",
    ),
    OpenApiParameter(
        "X-PAR-Query-Note",
        str,
        OpenApiParameter.HEADER,
        response=True,
        description="present when the record's community_id is not the Community ID of its own 5-tuple "
        "(Suricata 7.0 with two equal addresses): the ID of the 5-tuple is asked instead",
    ),
]
_SURICATA_ALERT = {
    "timestamp": "2026-12-01T05:40:02.500000+0000",
    "event_type": "alert",
    "src_ip": "10.0.0.1",
    "src_port": 51234,
    "dest_ip": "192.0.2.7",
    "dest_port": 443,
    "proto": "TCP",
    "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
    "alert": {"signature_id": 2100498, "signature": "GPL ATTACK_RESPONSE id check returned root"},
    "flow": {"pkts_toserver": 6, "pkts_toclient": 5, "start": "2026-12-01T05:40:00.123456+0000"},
}
_ZEEK_CONN = {
    "ts": 1764567600.123456,
    "uid": "CHhAvVGS1DHFjwGM9",
    "id.orig_h": "10.0.0.1",
    "id.orig_p": 51234,
    "id.resp_h": "192.0.2.7",
    "id.resp_p": 443,
    "proto": "tcp",
    "duration": 2.5,
}
RECORD_BODY = OpenApiRequest(
    {
        "type": "object",
        "additionalProperties": True,
        "description": "one Suricata EVE or Zeek conn.log record",
    },
    examples=[
        OpenApiExample("a Suricata alert", value=_SURICATA_ALERT),
        OpenApiExample("a Zeek conn.log record (JSON)", value=_ZEEK_CONN),
    ],
)
RECORD_DESCRIPTION = (
    "The body is one Suricata EVE record (alert, flow, anomaly, http, dns, tls, fileinfo, ...) or one Zeek "
    "conn.log record in JSON, at most 1 MiB. Its `community_id` selects the flow when present, else its "
    "addresses, ports and protocol; its window is the flow's start to its end, 1 s wider on each side (a "
    "flow without an end, as an alert's: until 5 minutes after the record's timestamp), else 5 minutes "
    "either side of its timestamp; start_time and end_time in the query string override it. The answer is exactly the equivalent GET's, named in "
    "`X-PAR-Query`. A record that names no flow is a 400 saying what is missing."
)
