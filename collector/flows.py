"""``GET /flows`` of several nodes: asked at once, their rows merged (each naming its node), failures listed.

A node's answer is docs/SPEC.md's ``{"window", "flows": [...], "truncated", ...}``; the merged
answer sorts every node's rows by the ``sort`` asked, keeps ``limit`` of them, and lists the
nodes that did not answer under ``"failed"`` (node id -> reason). The nodes' JSON is read and
the answer written with orjson: tens of thousands of rows are most of a listing's cost here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter, methodcaller
from typing import Any

import orjson
from django.http import HttpResponse

from api.flowlisting import CSV_TYPE, flows_csv
from collector.fanout import every_node_failed
from collector.models import Node
from collector.proxy import (
    NODE_PROBLEM,
    NodeSaid,
    NodeTimeout,
    NodeUnreachable,
    is_timeout,
    node_error,
    node_get,
    safe_header_value,
)
from collector.requestlog import RequestLog

log = logging.getLogger("collector.flows")

NodeFailure = NodeUnreachable | NodeTimeout | NodeSaid
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_FLOWS_JSON = 64 << 20  # 100000 rows of a node at about 300 bytes each, with room
SORTS = {
    "first": ("first", False),
    "last": ("last", False),
    "-bytes": ("bytes", True),
    "-packets": ("packets", True),
}
# What a node's row may hold (api.flowlisting.FlowDict). A row with another key, a value of another
# type or text of another shape marks the node's answer broken: nothing of it reaches the answer
# (a formula in a CSV cell, markup in the page, a key nobody asked for). Checked a column at a time,
# in C (a column's text joined, its characters checked by bytes.translate): a row-by-row check
# would cost several times the parse of the answer.
_NUMBERS = {"proto": 255, "src_port": 65535, "dst_port": 65535, "packets": 1 << 63, "bytes": 1 << 63}
_DIGITS = b"0123456789"
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" + _DIGITS + b"+/="
# column: (its characters, shortest, longest)
_TEXTS = {
    "src_addr": (_DIGITS + b"abcdefABCDEF:.", 2, 45),
    "dst_addr": (_DIGITS + b"abcdefABCDEF:.", 2, 45),
    "community_id": (_BASE64 + b":", 0, 30),
    "first": (_DIGITS + b"-:.TZ", 20, 30),
    "last": (_DIGITS + b"-:.TZ", 20, 30),
}
_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z"
_TIME_SHAPE = re.compile(_TIME.replace("[0-9]", "0").encode())  # a time with its digits made 0
_ZERO_DIGITS = bytes.maketrans(_DIGITS, b"0" * 10)
_FIELDS = (*_NUMBERS, *_TEXTS)
_KNOWN_KEYS = frozenset(_FIELDS) | {"approximate", "node"}  # node: replaced


def _text_column(column: Sequence, characters: bytes, shortest: int, longest: int) -> bytes | None:
    """The column's text, one value a line, when each value is text of ``characters`` in length bounds."""
    if set(map(type, column)) != {str}:
        return None
    lengths = set(map(len, column))
    if min(lengths) < shortest or max(lengths) > longest:
        return None
    try:
        text = "\n".join(column).encode("ascii")
    except UnicodeEncodeError:
        return None
    if text.translate(None, characters + b"\n") or text.count(b"\n") != len(column) - 1:
        return None
    return text


def valid_rows(rows: list) -> bool:
    """Whether every row of a node's answer is a flow row as nodes write them: keys, types, shapes."""
    if not rows:
        return True
    if set(map(type, rows)) != {dict} or not set().union(*rows) <= _KNOWN_KEYS:
        return False
    try:
        columns = {name: list(map(itemgetter(name), rows)) for name in _FIELDS}
    except KeyError:  # a row without one of them
        return False
    for name, top in _NUMBERS.items():
        column = columns[name]
        if set(map(type, column)) != {int} or min(column) < 0 or max(column) > top:
            return False
    texts: dict[str, bytes] = {}
    for name, rule in _TEXTS.items():
        text = _text_column(columns[name], *rule)
        if text is None:
            return False
        texts[name] = text
    for name in ("first", "last"):
        if not all(map(_TIME_SHAPE.fullmatch, set(texts[name].translate(_ZERO_DIGITS).split(b"\n")))):
            return False
    if {value[:2] for value in texts["community_id"].split(b"\n")} - {b"1:", b""}:
        return False
    return {row.get("approximate", True) for row in rows} == {True}


_WINDOW_TIME = re.compile(_TIME)


def valid_window(window: object) -> bool:
    return (
        type(window) is dict
        and window.keys() == {"start", "end"}
        and all(type(value) is str and _WINDOW_TIME.fullmatch(value) for value in window.values())
    )


class NodeFlows:
    """One node's /flows answer, read whole (bounded), or why it failed."""

    def __init__(
        self, node: Node, body: dict | None = None, failure: NodeFailure | None = None, damaged: str = ""
    ) -> None:
        self.node = node
        self.body = body or {}
        self.failure = failure
        self.damaged = damaged  # the node's X-PAR-Damaged: the damaged files it listed around


def _ask(node: Node, params: Mapping[str, str]) -> NodeFlows:
    try:
        answer = node_get(node, "flows", params)
    except (NodeUnreachable, NodeTimeout) as failure:
        return NodeFlows(node, failure=failure)
    if answer.status_code != 200:
        return NodeFlows(node, failure=node_error(node, answer))
    body = bytearray()
    try:
        for chunk in answer.stream(1 << 16):
            body += chunk
            if len(body) > MAX_FLOWS_JSON:
                return NodeFlows(node, failure=NodeUnreachable(f"{NODE_PROBLEM}: its answer is too large"))
        parsed = orjson.loads(body)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        return NodeFlows(node, failure=NodeUnreachable(f"{NODE_PROBLEM}: its answer is not JSON"))
    except Exception as exc:  # transport errors while reading
        return NodeFlows(node, failure=NodeTimeout() if is_timeout(exc) else NodeUnreachable())
    finally:
        answer.close()
    if not isinstance(parsed, dict) or not isinstance(parsed.get("flows"), list):
        return NodeFlows(node, failure=NodeUnreachable(f"{NODE_PROBLEM}: its answer has no flows"))
    if not valid_window(parsed.get("window")) or not valid_rows(parsed["flows"]):
        log.warning("node %s answered /flows with a row or window not of the flow row's shape", node.id)
        return NodeFlows(node, failure=NodeUnreachable(f"{NODE_PROBLEM}: its answer has a malformed row"))
    damaged = answer.headers.get("X-PAR-Damaged", "")
    return NodeFlows(node, body=parsed, damaged=damaged if safe_header_value(damaged) else "")


def ask_flows(nodes: Sequence[Node], params: Mapping[str, str]) -> list[NodeFlows]:
    """Every node's /flows, asked at once, in node order."""
    if len(nodes) == 1:
        return [_ask(nodes[0], params)]
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="par-flows") as pool:
        return list(pool.map(lambda node: _ask(node, params), nodes))


def _sort_key(sort: str):
    field, _ = SORTS.get(sort, SORTS["first"])
    return lambda row: (row.get(field) is None, row.get(field) or 0, row.get("node", ""))


def merge_flows(answers: list[NodeFlows], *, sort: str, limit: int) -> dict[str, Any]:
    """The nodes' rows as one answer: each row names its node, sorted, cut at ``limit``.

    Rows of equal sort value go by node id (as text; descending for a descending sort), then in
    their node's order. When every row has the sort field, of one type (as nodes write them), the
    rows are sorted by that field alone, the nodes' lists laid out in that order first.
    """
    field, descending = SORTS.get(sort, SORTS["first"])
    truncated = False
    window = None
    lists: list[tuple[str, list[dict]]] = []
    for answer in answers:
        if answer.failure is not None:
            continue
        window = window or answer.body.get("window")
        truncated = truncated or answer.body.get("truncated") is True
        node = str(answer.node.id)
        flows = answer.body["flows"]  # every row checked as it arrived (valid_rows)
        for row in flows:
            row["node"] = node  # in place: the key keeps its place if the node named one
        lists.append((node, flows))
    lists.sort(key=itemgetter(0), reverse=descending)
    rows = [row for _, flows in lists for row in flows]
    kinds = {type(value) for value in map(methodcaller("get", field), rows)}
    if kinds == {int} or kinds == {str}:
        rows.sort(key=itemgetter(field), reverse=descending)
    else:
        rows.sort(key=_sort_key(sort), reverse=descending)
    if len(rows) > limit:
        rows, truncated = rows[:limit], True
    failed = {str(a.node.id): str(a.failure.reason) for a in answers if a.failure is not None}
    merged: dict[str, Any] = {"window": window, "flows": rows, "truncated": truncated, "failed": failed}
    histogram = merged_histogram(answers)
    if histogram is not None:
        merged["histogram"] = histogram
    return merged


def merged_histogram(answers: list[NodeFlows]) -> list[int] | None:
    """The nodes' bytes over time added slice by slice; None unless every node that answered sent one
    of the same slices (a node of an older version sends none: the page then draws the rows)."""
    lists: list[list] = []
    for answer in answers:
        if answer.failure is None:
            histogram = answer.body.get("histogram")
            if not isinstance(histogram, list) or not all(isinstance(v, int) for v in histogram):
                return None
            lists.append(histogram)
    if not lists or len({len(h) for h in lists}) != 1 or not lists[0]:
        return None
    return [sum(column) for column in zip(*lists, strict=True)]


def as_csv(answer: dict[str, Any]) -> str:
    """The rows as the nodes write CSV (``api.flowlisting``): RFC 4180, CRLF, a header row."""
    return flows_csv(answer["flows"])


def flows_answer(
    nodes: Sequence[Node], params: Mapping[str, str], entry: RequestLog, *, sort: str, limit: int, output: str
) -> HttpResponse:
    """``/flows`` from ``nodes``; when none answered, the failure (one node) or a 502/504 naming each."""
    answers = ask_flows(nodes, params)
    for answer in answers:
        if answer.failure is None:
            entry.node_answered(answer.node.id, 200, len(answer.body.get("flows", [])))
        else:
            status = answer.failure.status_code if isinstance(answer.failure, NodeSaid) else None
            entry.node_answered(answer.node.id, status, 0, str(answer.failure.reason))
    if all(a.failure is not None for a in answers):
        raise every_node_failed([(a.node, a.failure) for a in answers if a.failure is not None])
    merged = merge_flows(answers, sort=sort, limit=limit)
    if output == "csv":
        response = HttpResponse(as_csv(merged), content_type=CSV_TYPE)
        response["Content-Disposition"] = 'attachment; filename="flows.csv"'
    else:
        # orjson: the same JSON as json.dumps writes (compact), several times faster for 100000 rows
        response = HttpResponse(orjson.dumps(merged), content_type="application/json")
    response["X-PAR-Nodes"] = ",".join(str(a.node.id) for a in answers if a.failure is None)
    damaged = damage_header(answers, several=len(nodes) > 1)
    if damaged:
        response["X-PAR-Damaged"] = damaged
    return response


def damage_header(answers: list[NodeFlows], *, several: bool) -> str:
    """The nodes' X-PAR-Damaged as /data.pcap passes it on: one node's as it is, several prefixed ``<id>=``."""
    named = [a for a in answers if a.failure is None and a.damaged]
    if not several:
        return named[0].damaged if named else ""
    return ", ".join(f"{a.node.id}={a.damaged}" for a in named)
