"""A flow listing's shapes: the rows as merged across files (``ROW_DTYPE``), and as answered.

``FlowColumns`` are the answer's columns (what a JSON or CSV answer is written from), ``FlowRow``
one row of them, ``FlowListing`` a whole listing with the damaged files it met and its histogram.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

import numpy as np

ROW_DTYPE = np.dtype(
    [
        ("a_hi", "<u8"),
        ("a_lo", "<u8"),
        ("b_hi", "<u8"),
        ("b_lo", "<u8"),
        ("a_port", "<u2"),
        ("b_port", "<u2"),
        ("proto", "u1"),
        ("first_ns", "<i8"),
        ("last_ns", "<i8"),
        ("packets", "<u8"),
        ("bytes", "<u8"),
        ("approximate", "?"),
        ("b_first", "?"),  # the b end sent the flow's first packet
        ("community_id", "V20"),
    ]
)
KEY_FIELDS = ["a_hi", "a_lo", "b_hi", "b_lo", "a_port", "b_port", "proto"]


@dataclass(frozen=True)
class FlowRow:
    """One flow of a listing."""

    proto: int
    src_addr: str
    src_port: int
    dst_addr: str
    dst_port: int
    community_id: str
    first_ns: int
    last_ns: int
    packets: int
    bytes: int
    approximate: bool


@dataclass(frozen=True)
class FlowColumns:
    """The rows of a listing as columns, in the listing's order, their text already written."""

    proto: list[int]
    src_addr: list[str]
    src_port: list[int]
    dst_addr: list[str]
    dst_port: list[int]
    community_id: list[str]
    first_ns: list[int]
    last_ns: list[int]
    packets: list[int]
    bytes: list[int]
    approximate: list[bool]

    def __len__(self) -> int:
        return len(self.proto)

    def rows(self) -> list[FlowRow]:
        return [
            FlowRow(*values) for values in zip(*(getattr(self, f.name) for f in fields(self)), strict=True)
        ]


@dataclass(frozen=True)
class FileDamage:
    """A damaged file a listing met: read up to its damage (its index says where), or not at all."""

    path: str
    description: str  # for the log: the file and what is wrong with it

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class FlowListing:
    columns: FlowColumns
    truncated: bool
    damaged: list[FileDamage]  # in the order met
    # Bytes over time of every flow matched, listed or not: HISTOGRAM_BINS equal slices of the window.
    histogram: list[int] = field(default_factory=list)

    @property
    def damaged_names(self) -> list[str]:
        """The damaged files' names, once each, as ``X-PAR-Damaged`` lists them (as for /data.pcap)."""
        return list(dict.fromkeys(d.name for d in self.damaged))

    @property
    def rows(self) -> list[FlowRow]:
        """The rows one by one (the columns are what an answer is written from)."""
        return self.columns.rows()
