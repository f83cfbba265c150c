"""The /flows answer (docs/SPEC.md "GET /flows"): one JSON shape for node and collector, and its CSV form (RFC 4180).

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
from dataclasses import astuple, dataclass
from typing import Annotated, TypedDict, cast, get_args, get_type_hints

from api.spreadsheet import safe_cell
from api.times import format_iso, format_iso_many
from engine.flows.rows import FlowColumns, FlowListing, FlowRow

CSV_TYPE = "text/csv; charset=utf-8"


@dataclass(frozen=True)
class Shown:
    """How a field of the flow row is shown: its kind (``int``, ``text``, ``address``, ``time``,
    ``flag``), its description in the OpenAPI document, whether every row has it."""

    kind: str
    help: str = ""
    required: bool = True


class FlowDict(TypedDict, total=False):
    """One row of a /flows answer, declared once: its JSON and CSV forms (``ROW_JSON``, ``ROW_CSV``,
    ``CSV_COLUMNS``) and its OpenAPI shape (``api.serializers.FlowRowSerializer``) are derived from it."""

    node: Annotated[str, Shown("text", "the node that saw it (collector answers)", required=False)]
    proto: Annotated[int, Shown("int", "IP protocol number")]
    src_addr: Annotated[str, Shown("address")]
    src_port: Annotated[int, Shown("int", "for ICMP: the message type")]
    dst_addr: Annotated[str, Shown("address")]
    dst_port: Annotated[int, Shown("int", "for ICMP: the reply's type, or the code")]
    community_id: Annotated[str, Shown("text", "Community ID v1, seed 0")]
    first: Annotated[str, Shown("time", "its first packet in the files read (ISO 8601, UTC, ns)")]
    last: Annotated[str, Shown("time", "its last packet in the files read")]
    packets: Annotated[int, Shown("int")]
    bytes: Annotated[int, Shown("int", "original lengths, summed")]
    approximate: Annotated[
        bool, Shown("flag", "true when the counts may include packets outside the window", required=False)
    ]


FLOW_FIELDS: dict[str, Shown] = {
    name: get_args(hint)[1] for name, hint in get_type_hints(FlowDict, include_extras=True).items()
}
CSV_COLUMNS = tuple(FLOW_FIELDS)
# The fields every row has, between the optional ``node`` (first) and ``approximate`` (last).
_ALWAYS = [name for name, shown in FLOW_FIELDS.items() if shown.required]
# One row as json.dumps writes a FlowDict (default separators), without and with "approximate".
ROW_JSON = (
    "{"
    + ", ".join(f'"{name}": ' + ("%d" if FLOW_FIELDS[name].kind == "int" else '"%s"') for name in _ALWAYS)
    + "}"
)
ROW_JSON_APPROXIMATE = ROW_JSON[:-1] + ', "approximate": true}'
ROW_CSV = ",".join("%d" if shown.kind == "int" else "%s" for shown in FLOW_FIELDS.values()) + "\r\n"
_CSV_SPECIAL = frozenset(',"\r\n')


class FlowsAnswer(TypedDict):
    window: dict[str, str]
    flows: list[FlowDict]
    truncated: bool
    failed: dict[str, str]
    histogram: list[int]  # bytes of every flow matched in 60 equal slices of the window


def flow_dict(row: FlowRow, node: str | None = None) -> FlowDict:
    """One row as the answer shows it; ``approximate`` only where it is true (the reference of ``flow_dicts``)."""
    values = (*astuple(row)[:6], format_iso(row.first_ns), format_iso(row.last_ns), row.packets, row.bytes)
    return _shown(values, row.approximate, node)


def flow_dicts(columns: FlowColumns, node: str | None = None) -> list[FlowDict]:
    """Every row as ``flow_dict`` shows it, written from the listing's columns (times by numpy)."""
    return [
        _shown(values, approximate, node)
        for values, approximate in zip(_row_values(columns), columns.approximate, strict=True)
    ]


def _shown(values: tuple, approximate: bool, node: str | None) -> FlowDict:
    shown = cast(FlowDict, dict(zip(_ALWAYS, values, strict=True)))
    if node is not None:
        shown = cast(FlowDict, {"node": node, **shown})
    if approximate:
        shown["approximate"] = True
    return shown


def flows_answer(start_ns: int, end_ns: int, listing: FlowListing, node: str | None = None) -> FlowsAnswer:
    return FlowsAnswer(
        window={"start": format_iso(start_ns), "end": format_iso(end_ns)},
        flows=flow_dicts(listing.columns, node),
        truncated=listing.truncated,
        failed={},
        histogram=listing.histogram,
    )


def flows_csv(flows: Iterable[FlowDict]) -> str:
    """The rows as CSV: a header row, CRLF line ends, fields quoted where RFC 4180 needs it.

    A text cell a spreadsheet would run as a formula is written as text (``api.spreadsheet``).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for flow in flows:
        values = {**flow, "approximate": "true" if flow.get("approximate") else "false"}
        writer.writerow([_cell(values.get(column, "")) for column in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: object) -> object:
    return safe_cell(value) if isinstance(value, str) else value


def _row_values(columns: FlowColumns) -> Iterable[tuple]:
    """Each row's values in ROW_JSON's order (the fields every row has), times as ISO text."""
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
