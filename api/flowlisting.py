"""The /flows answer (SPEC "GET /flows"): one JSON shape for node and collector, and its CSV form (RFC 4180).

A listing of many rows is written as text straight from the engine's columns (``flows_json``,
``columns_csv``): one format per row, the same bytes ``json.dumps`` and ``csv`` write from the
dicts (``flows_answer``, ``flows_csv``), at a fraction of their cost. The row's strings
(addresses, Community IDs, ISO times) hold no character JSON or CSV would escape.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import TypedDict

from api.times import format_iso, format_iso_many
from engine.flows import FlowColumns, FlowListing, FlowRow

CSV_COLUMNS = (
    "node",
    "proto",
    "src_addr",
    "src_port",
    "dst_addr",
    "dst_port",
    "community_id",
    "first",
    "last",
    "packets",
    "bytes",
    "approximate",
)
CSV_TYPE = "text/csv; charset=utf-8"
# One row as json.dumps writes a FlowDict (default separators), without and with "approximate".
ROW_JSON = (
    '{"proto": %d, "src_addr": "%s", "src_port": %d, "dst_addr": "%s", "dst_port": %d, '
    '"community_id": "%s", "first": "%s", "last": "%s", "packets": %d, "bytes": %d}'
)
ROW_JSON_APPROXIMATE = ROW_JSON[:-1] + ', "approximate": true}'
ROW_CSV = "%s,%d,%s,%d,%s,%d,%s,%s,%s,%d,%d,%s\r\n"
_CSV_SPECIAL = frozenset(',"\r\n')


class FlowDict(TypedDict, total=False):
    node: str
    proto: int
    src_addr: str
    src_port: int
    dst_addr: str
    dst_port: int
    community_id: str
    first: str
    last: str
    packets: int
    bytes: int
    approximate: bool


class FlowsAnswer(TypedDict):
    window: dict[str, str]
    flows: list[FlowDict]
    truncated: bool
    failed: dict[str, str]
    histogram: list[int]  # bytes of every flow matched in 60 equal slices of the window


def flow_dict(row: FlowRow, node: str | None = None) -> FlowDict:
    """One row as the answer shows it; ``approximate`` only where it is true."""
    shown = FlowDict(
        proto=row.proto,
        src_addr=row.src_addr,
        src_port=row.src_port,
        dst_addr=row.dst_addr,
        dst_port=row.dst_port,
        community_id=row.community_id,
        first=format_iso(row.first_ns),
        last=format_iso(row.last_ns),
        packets=row.packets,
        bytes=row.bytes,
    )
    if node is not None:
        shown = FlowDict(node=node, **shown)
    if row.approximate:
        shown["approximate"] = True
    return shown


def flow_dicts(columns: FlowColumns, node: str | None = None) -> list[FlowDict]:
    """Every row as ``flow_dict`` shows it, written from the listing's columns (times by numpy)."""
    rows: list[FlowDict] = []
    append = rows.append
    for (proto, src, sport, dst, dport, cid, first, last, packets, size), approximate in zip(
        _row_values(columns), columns.approximate, strict=True
    ):
        shown = FlowDict(
            proto=proto,
            src_addr=src,
            src_port=sport,
            dst_addr=dst,
            dst_port=dport,
            community_id=cid,
            first=first,
            last=last,
            packets=packets,
            bytes=size,
        )
        if approximate:
            shown["approximate"] = True
        append(shown if node is None else FlowDict(node=node, **shown))
    return rows


def flows_answer(start_ns: int, end_ns: int, listing: FlowListing, node: str | None = None) -> FlowsAnswer:
    return FlowsAnswer(
        window={"start": format_iso(start_ns), "end": format_iso(end_ns)},
        flows=flow_dicts(listing.columns, node),
        truncated=listing.truncated,
        failed={},
        histogram=listing.histogram,
    )


def flows_csv(flows: Iterable[FlowDict]) -> str:
    """The rows as CSV: a header row, CRLF line ends, fields quoted where RFC 4180 needs it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for flow in flows:
        values = {**flow, "approximate": "true" if flow.get("approximate") else "false"}
        writer.writerow([values.get(column, "") for column in CSV_COLUMNS])
    return out.getvalue()


def _row_values(columns: FlowColumns) -> Iterable[tuple]:
    """Each row's values in ROW_JSON's order, times as ISO text."""
    return zip(
        columns.proto,
        columns.src_addr,
        columns.src_port,
        columns.dst_addr,
        columns.dst_port,
        columns.community_id,
        format_iso_many(columns.first_ns),
        format_iso_many(columns.last_ns),
        columns.packets,
        columns.bytes,
        strict=True,
    )


def flows_json(start_ns: int, end_ns: int, listing: FlowListing, node: str | None = None) -> bytes:
    """``json.dumps(flows_answer(...))``, byte for byte, written from the listing's columns."""
    plain, approximate = ROW_JSON, ROW_JSON_APPROXIMATE
    if node is not None:
        named = '{"node": ' + json.dumps(node).replace("%", "%%") + ", "
        plain, approximate = named + plain[1:], named + approximate[1:]
    rows = [
        (approximate if marked else plain) % values
        for values, marked in zip(_row_values(listing.columns), listing.columns.approximate, strict=True)
    ]
    head = json.dumps({"start": format_iso(start_ns), "end": format_iso(end_ns)})
    tail = json.dumps(listing.truncated)
    histogram = json.dumps(listing.histogram)
    return (
        f'{{"window": {head}, "flows": [{", ".join(rows)}], "truncated": {tail}, "failed": {{}},'
        f' "histogram": {histogram}}}'
    ).encode()


def columns_csv(columns: FlowColumns, node: str | None = None) -> str:
    """``flows_csv`` of the rows, written from the listing's columns."""
    if node is not None and _CSV_SPECIAL.intersection(node):
        return flows_csv(flow_dicts(columns, node))  # a node name the csv module must quote
    name = (node or "").replace("%", "%%")
    row = name + ROW_CSV[2:]
    rows = [
        row % (*values, "true" if marked else "false")
        for values, marked in zip(_row_values(columns), columns.approximate, strict=True)
    ]
    return "\r\n".join([",".join(CSV_COLUMNS), ""]) + "".join(rows)
