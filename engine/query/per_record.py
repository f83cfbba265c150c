"""The per-record path: each candidate record read, dissected and decided on its own.

This is the reference every other read path of the query is tested against (``bulk=False`` of
``engine.query.plan.query_captures`` reads every file so): ``indexed_records`` reads the records an
index names, ``scanned_records`` every record of a file without one. Later fragments follow the
fragment rule of ``engine.dissection.packet`` either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..dissection.packet import dissect
from ..formats import Capture, Record
from ..selection.exact import Matcher
from ..selection.match import SelectionMatcher


def in_slices(offsets: np.ndarray, size: int = 4096) -> Iterator[int]:
    """The offsets as Python ints, a slice at a time: a big answer never holds them all as objects."""
    for start in range(0, len(offsets), size):
        yield from offsets[start : start + size].tolist()


def indexed_records(
    capture: Capture, offsets: Iterable[int], m: Matcher | SelectionMatcher
) -> Iterator[Record]:
    """The records at ``offsets`` that really belong to the flow and the window."""
    for record in capture.records_at(offsets):
        if not m.start_ns <= record.ts_ns <= m.end_ns:
            continue
        f = dissect(record.linktype, record.data)
        if f is None:
            continue
        # A later fragment shows no ports; the index tied it to its first fragment's flow.
        if m.endpoints(f) if f.later_fragment else m.flow(f, record.linktype, record.data):
            yield record


def scanned_records(capture: Iterable[Record], m: Matcher | SelectionMatcher) -> Iterator[Record]:
    """Every record of the file that belongs to the flow and the window, reading it all, in file order.

    Later fragments follow the fragment rule of ``engine.dissection.packet``; one met before any first
    fragment of its key needs the earliest one after it, learned by one extra read of the file,
    done only when such a fragment between the flow's addresses turns up.
    """
    needles = m.needles()
    first_fragments: dict[tuple, bool] = {}  # reassembly key -> did the latest first fragment match
    earliest: dict[tuple, bool] | None = None  # the same for the earliest one, once needed
    for record in capture:
        data = record.data
        if any(needle not in data for needle in needles):
            continue
        f = dissect(record.linktype, data)
        if f is None:
            continue
        if f.later_fragment:
            assert f.frag_key is not None  # a later fragment always has its reassembly key
            matched = first_fragments.get(f.frag_key)
            if matched is None:
                if not (m.endpoints(f) and m.start_ns <= record.ts_ns <= m.end_ns):
                    continue
                if earliest is None:
                    earliest = _earliest_first_fragments(capture, m)
                matched = earliest.get(f.frag_key, False)  # False: no first fragment in the file
        else:
            matched = m.flow(f, record.linktype, data)
            if f.frag_key is not None:
                first_fragments[f.frag_key] = matched
        if matched and m.start_ns <= record.ts_ns <= m.end_ns:
            yield record


def _earliest_first_fragments(capture: Iterable[Record], m: Matcher | SelectionMatcher) -> dict[tuple, bool]:
    """Reassembly key -> does the earliest first fragment with it match (fragments between the addresses)."""
    needles = m.needles()
    earliest: dict[tuple, bool] = {}
    for record in capture:
        data = record.data
        if any(needle not in data for needle in needles):
            continue
        f = dissect(record.linktype, data)
        if f is not None and f.frag_key is not None and not f.later_fragment and m.endpoints(f):
            earliest.setdefault(f.frag_key, m.flow(f, record.linktype, data))
    return earliest
