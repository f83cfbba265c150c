"""A capture file's flow index: what it holds, how it is built, opened and looked up.

Owns the index file from end to end: ``format`` (the layout and the one rule for when an index
answers for its capture), ``flows`` (the flow table and lookup columns made from dissected records),
``build`` (one pass over a capture), ``opening`` (``FlowIndex``: header and checksums checked, the
capture's fingerprint, open indexes kept), ``columns`` (the columns as the lookups read them),
``lookup`` (flow rows; flows by address, port, Community ID, time), ``offsets`` (a flow's packet
offsets decoded), ``summary`` (an hour's indexes in one file).
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
from .lookup import ROW_DTYPE
from .opening import (
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
