"""Answer a flow query over capture files: plan per file, read candidates, merge in time order, stream.

Which files can answer a window is the capture tree's decision (``node.store``): it hands the
engine ``CaptureFile(path, epoch, span, index)`` records, and the engine reads them without
parsing names or headers again. A file with a current index is answered from it: the flow is
looked up, only its records are read, and each one is checked against the query (fields and time)
before it is kept. A file without one (the file still being written, an index of another version,
a damaged index) is scanned record by record with the same rules, so both give the same answer;
later fragments follow the fragment rule of ``engine.dissect`` either way.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .dissect import PORT_PROTOCOLS, V4_PREFIX, FlowFields, dissect
from .flow import FlowQuery
from .formats import (
    Capture,
    CaptureError,
    CaptureWriter,
    IncompleteHeader,
    PcapngCapture,
    Record,
    open_capture,
)
from .index import FlowIndex, IndexUnusable, open_index


class CaptureFile(NamedTuple):
    """A capture file as the capture tree hands it to a query: what it knows of it already."""

    path: Path
    epoch: int | None = None  # the epoch in its name
    span: tuple[int, int] | None = None  # (first_ns, last_ns) it may hold; None = unknown
    index: FlowIndex | None = None  # type: ignore[assignment]  # its current index, found with the span

    @classmethod
    def at(cls, path: str | os.PathLike) -> CaptureFile:
        """A file known by its path only: its index is looked up, its span is not known."""
        return cls(Path(path), index=open_index(path))


def address16(address) -> bytes:
    """An address as the 16 bytes the engine compares (IPv4 as ``::ffff:a.b.c.d``)."""
    if address.version == 4:
        return V4_PREFIX + address.packed
    return address.packed


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
    def of(cls, q: FlowQuery) -> Matcher:
        protocols = PORT_PROTOCOLS if q.proto is None else (q.proto,)
        return cls(address16(q.a), q.a_port, address16(q.b), q.b_port, protocols, q.start_ns, q.end_ns)

    def flow(self, f: FlowFields) -> bool:
        """True when ``f`` (not a later fragment) is a packet of the flow, either way."""
        if f.proto not in self.protocols:
            return False
        forward = (f.src, f.sport, f.dst, f.dport) == (self.a, self.a_port, self.b, self.b_port)
        return forward or (f.src, f.sport, f.dst, f.dport) == (self.b, self.b_port, self.a, self.a_port)

    def endpoints(self, f: FlowFields) -> bool:
        """True when ``f`` travels between the flow's two addresses (all a later fragment can show)."""
        return (f.src, f.dst) in ((self.a, self.b), (self.b, self.a))

    def needles(self) -> tuple[bytes, bytes]:
        """Bytes every matching frame contains (its addresses), for a cheap first test in a scan."""
        a, b = (x[12:] if x[:12] == V4_PREFIX else x for x in (self.a, self.b))
        return a, b


@dataclass
class FilePlan:
    """How one file is read: from its index (offsets known) or by a scan."""

    capture: Capture
    index: FlowIndex | None = None
    offsets: np.ndarray | None = None  # record offsets, ascending, when read from the index

    @property
    def linktypes(self) -> list[int]:
        return self.capture.linktypes

    def records(self, m: Matcher) -> Iterator[Record]:
        if self.offsets is not None:
            return self._indexed_or_scanned(m, self.offsets)
        return scanned_records(self.capture, m)

    def _indexed_or_scanned(self, m: Matcher, offsets: np.ndarray) -> Iterator[Record]:
        """The indexed records; when an offset proves not to be a record, the rest by a scan."""
        last = -1
        try:
            for record in indexed_records(self.capture, _in_slices(offsets), m):
                last = record.offset
                yield record
            return
        except CaptureError:
            pass  # a damaged index (a damaged capture fails the scan the same way)
        for record in scanned_records(self.capture, m):
            if record.offset > last:
                yield record


def _indexed_offsets(index: FlowIndex, m: Matcher) -> np.ndarray:
    """The offsets of the file's candidate records (maybe none); IndexUnusable for a damaged index."""
    if index.records == 0 or index.last_ns < m.start_ns or index.first_ns > m.end_ns:
        return np.zeros(0, dtype=np.int64)
    flows = index.find(m.a, m.a_port, m.b, m.b_port, m.protocols, m.start_ns, m.end_ns)
    return index.packet_offsets(flows) if len(flows) else np.zeros(0, dtype=np.int64)


def plan_file(file: CaptureFile, m: Matcher) -> FilePlan | None:
    """Decide how to read ``file``; None when it cannot hold an answer (then it is not even opened)."""
    if file.span is not None and (file.span[1] < m.start_ns or file.span[0] > m.end_ns):
        return None
    index, offsets = file.index, None
    if index is not None and index.usable_for_queries:
        try:
            offsets = _indexed_offsets(index, m)
        except IndexUnusable:
            index = None  # damaged inside: read like a file without an index
        else:
            if not len(offsets):
                return None
    else:
        index = None
    try:
        capture = open_capture(file.path)
    except IncompleteHeader:
        return None  # a file just created: nothing in it yet
    try:
        if index is not None and isinstance(capture, PcapngCapture):
            capture.learn_blocks(index.meta_offsets)
    except CaptureError:
        # The index names blocks that are not there: it is damaged, the capture may be fine. What
        # was learned are real blocks, which the scan meets again.
        return FilePlan(capture)
    except BaseException:
        capture.close()
        raise
    return FilePlan(capture, index, offsets)


def _in_slices(offsets: np.ndarray, size: int = 4096) -> Iterator[int]:
    """The offsets as Python ints, a slice at a time: a big answer never holds them all as objects."""
    for start in range(0, len(offsets), size):
        yield from offsets[start : start + size].tolist()


def indexed_records(capture: Capture, offsets: Iterable[int], m: Matcher) -> Iterator[Record]:
    """The records at ``offsets`` that really belong to the flow and the window."""
    for record in capture.records_at(offsets):
        if not m.start_ns <= record.ts_ns <= m.end_ns:
            continue
        f = dissect(record.linktype, record.data)
        if f is None:
            continue
        # A later fragment shows no ports; the index tied it to its first fragment's flow.
        if m.endpoints(f) if f.later_fragment else m.flow(f):
            yield record


def scanned_records(capture: Capture, m: Matcher) -> Iterator[Record]:
    """Every record of the file that belongs to the flow and the window, reading it all, in file order.

    Later fragments follow the fragment rule of ``engine.dissect``; one met before any first
    fragment of its key needs the earliest one after it, learned by one extra read of the file,
    done only when such a fragment between the flow's addresses turns up.
    """
    needle_a, needle_b = m.needles()
    first_fragments: dict[tuple, bool] = {}  # reassembly key -> did the latest first fragment match
    earliest: dict[tuple, bool] | None = None  # the same for the earliest one, once needed
    for record in capture:
        data = record.data
        if needle_a not in data or needle_b not in data:
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
            matched = m.flow(f)
            if f.frag_key is not None:
                first_fragments[f.frag_key] = matched
        if matched and m.start_ns <= record.ts_ns <= m.end_ns:
            yield record


def _earliest_first_fragments(capture: Capture, m: Matcher) -> dict[tuple, bool]:
    """Reassembly key -> does the earliest first fragment with it match (fragments between the addresses)."""
    needle_a, needle_b = m.needles()
    earliest: dict[tuple, bool] = {}
    for record in capture:
        data = record.data
        if needle_a not in data or needle_b not in data:
            continue
        f = dissect(record.linktype, data)
        if f is not None and f.frag_key is not None and not f.later_fragment and m.endpoints(f):
            earliest.setdefault(f.frag_key, m.flow(f))
    return earliest


def _output_format(files: Sequence[CaptureFile], plans: list[FilePlan]) -> tuple[list[int], bool]:
    """Link types and precision of the answer: those of the files that can contribute."""
    if plans:
        linktypes = sorted({lt for plan in plans for lt in plan.linktypes})
        return linktypes, any(plan.capture.nanosecond for plan in plans)
    for file in files:
        try:
            with open_capture(file.path) as capture:
                return capture.linktypes[:1] or [1], capture.nanosecond
        except (OSError, ValueError):
            continue
    return [1], False


def query_captures(
    files: Sequence[CaptureFile | str | os.PathLike], q: FlowQuery, *, chunk_size: int = 1 << 16
) -> Generator[bytes, None, None]:
    """A pcap stream (header, then the flow's records in time order across ``files``), in chunks.

    ``files`` are the store's ``CaptureFile`` records, or paths (their index is then looked up).
    """
    m = Matcher.of(q)
    plans: list[FilePlan] = []
    try:
        known = [f if isinstance(f, CaptureFile) else CaptureFile.at(f) for f in files]
        for file in known:
            plan = plan_file(file, m)
            if plan is not None:
                plans.append(plan)
        linktypes, nanosecond = _output_format(known, plans)
        writer = CaptureWriter(linktypes, nanosecond)
        merged = heapq.merge(*(plan.records(m) for plan in plans), key=lambda r: r.ts_ns)
        yield from writer.stream(merged, chunk_size)
    finally:
        for plan in plans:
            plan.capture.close()
