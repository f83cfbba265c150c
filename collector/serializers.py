"""Response shapes of the collector's API, for the OpenAPI document."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from api.parameters import FLOWS_PARAMETERS, PCAP_PARAMETERS
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

_NODE_ID = OpenApiParameter("node_id", int, required=True, description="the node to ask")
DATA_PCAP_PARAMS = [_NODE_ID, *PCAP_PARAMETERS, API_KEY_PARAM]
FLOWS_PARAMS_DOC = [_NODE_ID, *FLOWS_PARAMETERS, API_KEY_PARAM]
FLOWS_CSV_RESPONSE = OpenApiResponse(
    OpenApiTypes.STR, description="the rows as CSV (RFC 4180), a header row first"
)
PCAP_RESPONSE = OpenApiResponse(
    OpenApiTypes.BINARY,
    description="the selected packets, a classic pcap stream (pcapng with format=pcapng or mixed link types); "
    "X-PAR-Window, X-PAR-Estimate-Packets and X-PAR-Estimate-Bytes as the node sent them",
)
NODE_ANSWER = OpenApiResponse(OpenApiTypes.OBJECT, description="the node's own answer, passed through")
