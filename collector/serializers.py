"""Response shapes of the collector's API, for the OpenAPI document."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from api.parameters import (
    ANSWER_PARAMETERS,
    FLOWS_HEADERS,
    LISTING_PARAMETERS,
    PCAP_HEADERS,
    RECORD_HEADERS,
    RECORD_WINDOW_PARAMETERS,
)
from api.serializers import ErrorSerializer


def _key_info_schema() -> dict:
    text, flag, when = {"type": "string"}, {"type": "boolean"}, {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "properties": {
            "name": text,
            "owner": text,
            "admin": flag,
            "all_nodes": flag,
            "nodes": {
                "type": "array",
                "items": text,
                "description": 'node ids this key may query; ["0"] for an admin key',
            },
            "active": {**flag, "description": "false once revoked"},
            "created": when,
            "last_used": {**when, "nullable": True, "description": "to the minute"},
            "expires": {**when, "nullable": True},
        },
        "required": ["name", "admin", "nodes", "created", "last_used"],
    }


# Objects keyed by a value (a key prefix, a node id): raw OpenAPI schemas.
KEYS_RESPONSE = {
    "type": "object",
    "description": "key prefix -> key (never the key itself)",
    "additionalProperties": _key_info_schema(),
}
NODES_RESPONSE = {
    "type": "object",
    "description": "node id -> host:port",
    "additionalProperties": {"type": "string"},
}

ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="no key, or an unknown, revoked or expired key"),
    429: OpenApiResponse(ErrorSerializer, description="too many requests for this key"),
}
NODE_ERRORS = {
    **ERRORS,
    403: OpenApiResponse(ErrorSerializer, description="this key may not query that node"),
    404: OpenApiResponse(ErrorSerializer, description="no such node (or the node found nothing)"),
    502: OpenApiResponse(
        ErrorSerializer, description="the node is unreachable, failed, or refused this collector"
    ),
    504: OpenApiResponse(ErrorSerializer, description="the node did not answer in time"),
}

API_KEY_PARAM = OpenApiParameter(
    "api_key", str, description="the API key, for the seed's clients (prefer the Authorization header)"
)

_FLOW_DOC = {
    "src_addr": "IPv4 or IPv6 address of one end",
    "src_port": "port of that end, 0-65535",
    "dst_addr": "IPv4 or IPv6 address of the other end",
    "dst_port": "port of the other end, 0-65535",
    "start_time": "window start: ISO 8601, epoch seconds, or like 2001-01-01 5:01pm (UTC without zone)",
    "end_time": "window end (inclusive), same forms",
}
DATA_PCAP_PARAMS = [
    OpenApiParameter("node_id", str, required=True, description="a node, a comma list (1,3,4), or all"),
    OpenApiParameter("format", str, description="pcap (default; pcapng when link types mix) or pcapng"),
    *(OpenApiParameter(name, str, required=True, description=text) for name, text in _FLOW_DOC.items()),
    OpenApiParameter(
        "proto", str, description="tcp, udp, sctp or a protocol number; default: any of the three"
    ),
    API_KEY_PARAM,
    *PCAP_HEADERS,
]
PCAP_RESPONSE = OpenApiResponse(
    OpenApiTypes.BINARY,
    description="the packets, a pcap stream (several nodes merged by time; X-PAR-Nodes, X-PAR-Nodes-Failed)",
)
NODE_ANSWER = OpenApiResponse(OpenApiTypes.OBJECT, description="the node's own answer, passed through")

FLOWS_RESPONSE = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description='{"window": {start, end}, "flows": [{node, proto, src_addr, src_port, dst_addr, dst_port, '
    'community_id, first, last, packets, bytes}], "truncated": bool, "failed": {node id: reason}}',
)
FLOWS_PARAMS_DOC = [
    OpenApiParameter("node_id", str, required=True, description="a node, a comma list (1,3,4), or all"),
    *(OpenApiParameter(name, str, description=text) for name, text in _FLOW_DOC.items()),
    OpenApiParameter("sort", str, description="first (default), last, -bytes, -packets"),
    OpenApiParameter("limit", int, description="at most this many rows (default 1000, at most 100000)"),
    OpenApiParameter("output", str, description="json (default) or csv"),
    API_KEY_PARAM,
    *FLOWS_HEADERS,
]
_NODE_ID = OpenApiParameter("node_id", str, required=True, description="a node, a comma list (1,3,4), or all")
RECORD_PCAP_PARAMS = [_NODE_ID, *RECORD_WINDOW_PARAMETERS, *ANSWER_PARAMETERS, API_KEY_PARAM, *PCAP_HEADERS]
RECORD_PCAP_PARAMS += RECORD_HEADERS
RECORD_FLOWS_PARAMS = [
    _NODE_ID,
    *RECORD_WINDOW_PARAMETERS,
    *LISTING_PARAMETERS,
    API_KEY_PARAM,
    *FLOWS_HEADERS,
]
RECORD_FLOWS_PARAMS += RECORD_HEADERS
