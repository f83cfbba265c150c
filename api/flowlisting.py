"""The /flows answer (SPEC "GET /flows"): one JSON shape for node and collector, and its CSV form (RFC 4180)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import TypedDict

from api.times import format_iso
from engine.flows import FlowListing, FlowRow

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


def flows_answer(start_ns: int, end_ns: int, listing: FlowListing, node: str | None = None) -> FlowsAnswer:
    return FlowsAnswer(
        window={"start": format_iso(start_ns), "end": format_iso(end_ns)},
        flows=[flow_dict(row, node) for row in listing.rows],
        truncated=listing.truncated,
        failed={},
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
