"""What a /data.pcap or /flows request asks: which nodes, which packets, and what the nodes are sent."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from rest_framework import exceptions

from api.flowparams import (
    FLOWS_PARAMS,
    PCAP_PARAMS,
    FlowParamError,
    parse_answer_options,
    parse_selection,
    selection_params,
)
from collector.models import (
    ACTIVE_NODES,
    NODE_SELECTION,
    ApiKey,
    KeyStream,
    Node,
    UserGrant,
    parse_node_selection,
)
from engine.selection.selectors import Selection

# Parameters beyond the seed's flow passed on to the nodes as given (docs/SPEC.md "Selecting packets").
PASSED_PARAMS = ("community_id", "format", "limit_packets", "limit_bytes")
SORTS = ("first", "last", "-bytes", "-packets")
OUTPUTS = ("json", "csv")
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000


class TooManyDownloads(exceptions.APIException):
    status_code = 429
    default_code = "too_many_downloads"


def requested_nodes(params: Mapping[str, str]) -> list[int] | None:
    """``node_id`` parsed (None: ``all``); a 400 naming the forms when it is missing or unreadable."""
    raw = params.get("node_id", "").strip()
    if not raw:
        raise exceptions.ValidationError("missing parameter: node_id")
    try:
        return parse_node_selection(raw)
    except ValueError:
        raise exceptions.ValidationError(NODE_SELECTION) from None


def resolve_nodes(key: ApiKey | UserGrant, node_ids: list[int] | None) -> list[Node]:
    """The active nodes asked, in id order (grants are checked before); 404 naming any unknown."""
    if node_ids is None:
        nodes = list(key.queryable_nodes())
        if not nodes:
            granted = "an administrator grants nodes" if isinstance(key, UserGrant) else "grant the key nodes"
            raise exceptions.NotFound(f"no node to ask: {key.who} may query no active node ({granted})")
        return nodes
    if key.every_node:
        nodes = ACTIVE_NODES.rows(*sorted(node_ids))
    else:  # the nodes asked were all found granted (collector.auth.HasNodeGrant), in the same query
        nodes = [node for node in key.granted_among(sorted(node_ids)) if node.active]
    missing = sorted(set(node_ids) - {node.id for node in nodes})
    if missing:
        if len(node_ids) == 1:
            raise exceptions.NotFound("no such node")
        raise exceptions.NotFound(f"no such node: {', '.join(map(str, missing))}")
    return nodes


def parse_flow(params: Mapping[str, str], *, listing: bool = False) -> Selection:
    """The selectors, window and options, validated as the nodes validate them (400 before any node is asked).

    Unknown parameters are refused by name; ``listing`` is for /flows (``limit``, ``sort``, ``output``).
    """
    try:
        known = FLOWS_PARAMS if listing else PCAP_PARAMS
        selection = parse_selection(
            params, utc=settings.PAR_UTC, max_window=settings.PAR_MAX_WINDOW, known=known
        )
        if not listing:
            parse_answer_options(params)
    except FlowParamError as exc:
        raise exceptions.ValidationError(str(exc)) from None
    return selection


def node_params(params: Mapping[str, str], flow: Selection, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """What each node is sent: the selection in exact forms (the window as epoch seconds, one "now"), and the options."""
    sent = selection_params(flow)
    for name in (*PASSED_PARAMS, *extra):
        if name not in sent and params.get(name, "").strip():
            sent[name] = params[name].strip()
    return sent


def listing_options(params: Mapping[str, str]) -> tuple[str, int, str]:
    """/flows' ``sort``, ``limit`` and ``output``, each checked (a 400 naming it)."""
    sort = params.get("sort", "").strip() or "first"
    if sort not in SORTS:
        raise exceptions.ValidationError(f"invalid sort: one of {', '.join(SORTS)}")
    text = params.get("limit", "").strip() or str(DEFAULT_LIMIT)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise exceptions.ValidationError(f"invalid limit: a number from 1 to {MAX_LIMIT}")
    output = params.get("output", "").strip().lower() or "json"
    if output not in OUTPUTS:
        raise exceptions.ValidationError("invalid output: json or csv")
    return sort, int(text), output


def wants_pcapng(params: Mapping[str, str]) -> bool:
    return params.get("format", "").strip().lower() == "pcapng"


def take_download_slot(holder: str, who: str = ApiKey.who) -> KeyStream:
    """One of the holder's PAR_KEY_STREAMS download slots; a 429 when every one is in use."""
    limit = settings.PAR_KEY_STREAMS
    slot = KeyStream.acquire(holder, limit)
    if slot is None:
        raise TooManyDownloads(
            f"{who} already runs {limit} downloads at once (PAR_KEY_STREAMS): wait for one to end"
        )
    return slot
