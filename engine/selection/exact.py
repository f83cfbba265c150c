"""The seed's exact flow (``FlowQuery``: two endpoints, a protocol, a window), matched by tuple.

``Matcher.of`` decides how a query is matched: an exact flow by comparing its tuple, any other
selection by ``engine.selection.match.SelectionMatcher``. Both offer the same tests (per packet,
per record column, per later fragment), which every read path of the query applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dissection.fields import FlowColumns, address_halves
from ..dissection.packet import PORT_PROTOCOLS, V4_PREFIX, FlowFields
from .match import SelectionMatcher
from .selectors import FlowQuery, Selection, address16


@dataclass(frozen=True)
class Matcher:
    """Decides whether a dissected packet belongs to the query's flow."""

    a: bytes
    a_port: int
    b: bytes
    b_port: int
    protocols: tuple[int, ...]
    start_ns: int
    end_ns: int

    @classmethod
    def of(cls, q: Selection) -> Matcher | SelectionMatcher:
        """The seed's exact flow matched by tuple; any other selection by ``engine.selection.match``."""
        if not isinstance(q, FlowQuery) or q.community_id is not None:
            return SelectionMatcher(q)
        protocols = PORT_PROTOCOLS if q.proto is None else (q.proto,)
        return cls(address16(q.a), q.a_port, address16(q.b), q.b_port, protocols, q.start_ns, q.end_ns)

    def flow(self, f: FlowFields, linktype: int | None = None, data: bytes | None = None) -> bool:
        """True when ``f`` (not a later fragment) is a packet of the flow, either way."""
        if f.proto not in self.protocols:
            return False
        forward = (f.src, f.sport, f.dst, f.dport) == (self.a, self.a_port, self.b, self.b_port)
        return forward or (f.src, f.sport, f.dst, f.dport) == (self.b, self.b_port, self.a, self.a_port)

    def endpoints(self, f: FlowFields) -> bool:
        """True when ``f`` travels between the flow's two addresses (all a later fragment can show)."""
        return (f.src, f.dst) in ((self.a, self.b), (self.b, self.a))

    def columns_match(self, c: FlowColumns) -> np.ndarray:
        """``flow`` over many records' fields at once (rows of the vectorised dissection)."""
        (a_hi, a_lo), (b_hi, b_lo) = address_halves(self.a), address_halves(self.b)

        def end(hi, lo, port, a_hi, a_lo, a_port):
            return (hi == np.uint64(a_hi)) & (lo == np.uint64(a_lo)) & (port == a_port)

        forward = end(c.src_hi, c.src_lo, c.sport, a_hi, a_lo, self.a_port)
        forward &= end(c.dst_hi, c.dst_lo, c.dport, b_hi, b_lo, self.b_port)
        reverse = end(c.src_hi, c.src_lo, c.sport, b_hi, b_lo, self.b_port)
        reverse &= end(c.dst_hi, c.dst_lo, c.dport, a_hi, a_lo, self.a_port)
        return c.has_flow & np.isin(c.proto, self.protocols) & (forward | reverse)

    def needles(self) -> tuple[bytes, bytes]:
        """Bytes every matching frame contains (its addresses), for a cheap first test in a scan."""
        a, b = (x[12:] if x[:12] == V4_PREFIX else x for x in (self.a, self.b))
        return a, b
