"""A capture file's flow index: built in one pass (``build``), read with binary searches (``read``).

The format, and when an index answers for its capture, are described once, in
``engine.index.format``; the flow table and lookup columns are made in ``engine.index.flows``.
"""

from __future__ import annotations

from ..communityid import community_id
from ..formats import CaptureError, IncompleteHeader
from .build import IndexStats, build_index, index_in_memory
from .format import (
    HEADER_SIZE,
    INDEX_SUFFIX,
    INDEX_VERSION,
    TEMP_INDEX_PATTERN,
    IndexDamaged,
    IndexHeader,
    IndexUnusable,
    decode_header,
    index_path,
    temp_index_path,
)
from .read import (
    ROW_DTYPE,
    FlowIndex,
    capture_digest,
    capture_span,
    forget_open_indexes,
    index_is_current,
    on_damaged_index,
    open_index,
)

__all__ = [
    "HEADER_SIZE",
    "ROW_DTYPE",
    "INDEX_SUFFIX",
    "INDEX_VERSION",
    "TEMP_INDEX_PATTERN",
    "CaptureError",
    "FlowIndex",
    "IncompleteHeader",
    "IndexDamaged",
    "IndexHeader",
    "IndexStats",
    "IndexUnusable",
    "build_index",
    "capture_digest",
    "capture_span",
    "community_id",
    "decode_header",
    "forget_open_indexes",
    "index_in_memory",
    "index_is_current",
    "index_path",
    "on_damaged_index",
    "open_index",
    "temp_index_path",
]
