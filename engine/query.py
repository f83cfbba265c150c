"""Answer a flow query over capture files: plan per file, read candidates, merge in time order, stream.

Which files can answer a window is the capture tree's decision (``node.store``): it hands the
engine ``CaptureFile(path, epoch, span, index)`` records, and the engine reads them without
parsing names or headers again. A file with a current index is answered from it: the flow is
looked up, only its records are read, and each one is checked against the query (fields and time)
before it is kept. A file without one (the file still being written, an index of another version,
a damaged index) is scanned record by record with the same rules, so both give the same answer;
later fragments follow the fragment rule of ``engine.dissect`` either way.

A damaged file (a crash or a full disk cut or corrupted it part-way) is read up to its damage:
the index says where it is (``FlowIndex.damaged_at``), a scan meets it. Each damage is noted in
the answer's ``DamageReport`` while the answer can still say so (before its first chunk); met
later, in a file without an index, it is raised and the answer is cut short. When every file of
the window is damaged before its first record, the first damage is raised: nothing can answer.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .answer import PCAP_RECORD_OVERHEAD, PCAPNG_RECORD_OVERHEAD, Limits, PcapngWriter
from .bulk import bulk_readable, indexed_pieces
from .bulkscan import scannable, scanned_pieces
from .damage import DamageReport, UpToDamage
from .dissect import PORT_PROTOCOLS, V4_PREFIX, FlowFields, dissect
from .fewrecords import few_record_pieces
from .flow import FlowQuery, Selection
from .flowfields import FlowColumns, address_halves
from .formats import (
    Capture,
    CaptureError,
    CaptureWriter,
    IncompleteHeader,
    PcapCapture,
    PcapngCapture,
    Record,
    open_capture,
)
from .formats.source import capture_length
from .index import FlowIndex, IndexUnusable, open_index
from .pieces import PIECE_BYTES, Piece, answered, encoded_pieces, merged
from .select import SelectionMatcher


class CaptureFile(NamedTuple):
    """A capture file as the capture tree hands it to a query: what it knows of it already."""

    path: Path
    epoch: int | None = None  # the epoch in its name
    span: tuple[int, int] | None = None  # (first_ns, last_ns) it may hold; None = unknown
    index: FlowIndex | None = None  # type: ignore[assignment]  # its current index, found with the span
    # The capture tree knows (its hour's summary) that no flow of the query is in it: not opened.
    excluded: bool = False

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
    def of(cls, q: Selection) -> Matcher | SelectionMatcher:
        """The seed's exact flow matched by tuple; any other selection by ``engine.select``."""
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


@dataclass
class FilePlan:
    """How one file is read: from its index (offsets known) or by a scan."""

    capture: Capture
    index: FlowIndex | None = None
    offsets: np.ndarray | None = None  # record offsets, ascending, when read from the index
    readable: UpToDamage | None = None  # what a scan reads: the records before any damage

    @property
    def linktypes(self) -> list[int]:
        return self.capture.linktypes

    def records(self, m: Matcher | SelectionMatcher) -> Iterator[Record]:
        if self.offsets is not None:
            return self._indexed_or_scanned(m, self.offsets)
        return scanned_records(self.scanned(), m)

    def pieces(
        self, m: Matcher | SelectionMatcher, writer: CaptureWriter, piece_bytes: int, bulk: bool = True
    ) -> Iterator[Piece]:
        """The file's selected records encoded for ``writer``, in file order: in bulk where it can be.

        Read record by record, a piece holds about ``piece_bytes``: damage met reading it is met
        no earlier than the answer's chunk holding those bytes would be.
        """
        capture, offsets = self.capture, self.offsets
        if bulk and offsets is not None and isinstance(capture, PcapCapture):
            rest = partial(self._indexed_or_scanned, m)
            if bulk_readable(capture, writer, len(offsets)):
                return indexed_pieces(capture, offsets, m, writer, rest)
            return few_record_pieces(capture, offsets.tolist(), m, writer, piece_bytes, rest)
        known_damage = self.readable is not None and self.readable.damaged_at is not None
        if bulk and offsets is None and not known_damage and scannable(capture, m, capture.size()):
            assert isinstance(capture, PcapCapture)
            return scanned_pieces(capture, m, writer, lambda last: self._scanned_after(m, last))
        return encoded_pieces(self.records(m), writer, piece_bytes)

    def _scanned_after(self, m: Matcher | SelectionMatcher, last: int) -> Iterator[Record]:
        """The scan's records after offset ``last`` (the scan itself reads the file from its start)."""
        for record in scanned_records(self.scanned(), m):
            if record.offset > last:
                yield record

    @property
    def earliest_ns(self) -> int | None:
        """A time no record of the file is before (its index's first), None when not known."""
        return self.index.first_ns if self.index is not None else None

    def scanned(self) -> Iterable[Record]:
        """The capture's records as a scan reads them: up to its damage when a report is kept."""
        return self.readable if self.readable is not None else self.capture

    def _indexed_or_scanned(
        self, m: Matcher | SelectionMatcher, offsets: np.ndarray, last: int = -1
    ) -> Iterator[Record]:
        """The indexed records after ``last``; when an offset proves not to be a record, the rest by a scan."""
        try:
            for record in indexed_records(self.capture, _in_slices(offsets), m):
                last = record.offset
                yield record
            return
        except CaptureError:
            pass  # a damaged index (a damaged capture fails the scan the same way)
        yield from self._scanned_after(m, last)


def _indexed_flows(index: FlowIndex, m: Matcher | SelectionMatcher) -> np.ndarray:
    """Ids of the file's candidate flows (maybe none); IndexUnusable for a damaged index."""
    if index.records == 0 or index.last_ns < m.start_ns or index.first_ns > m.end_ns:
        return np.zeros(0, dtype=np.int64)
    if isinstance(m, SelectionMatcher):
        return index.selected(m.lookup, m.flow_rows)
    return index.find(m.a, m.a_port, m.b, m.b_port, m.protocols, m.start_ns, m.end_ns)


def _indexed_offsets(index: FlowIndex, m: Matcher | SelectionMatcher) -> np.ndarray:
    """The offsets of the file's candidate records (maybe none); IndexUnusable for a damaged index."""
    flows = _indexed_flows(index, m)
    return index.packet_offsets(flows) if len(flows) else np.zeros(0, dtype=np.int64)


def plan_file(
    file: CaptureFile, m: Matcher | SelectionMatcher, report: DamageReport | None = None
) -> FilePlan | None:
    """Decide how to read ``file``; None when it cannot hold an answer (then it is not even opened).

    With a ``report``, a file's known damage (its index's, or a file header that cannot be read)
    is noted there and the file is read up to it; without one, damage raises CaptureError.
    """
    if file.excluded or (file.span is not None and (file.span[1] < m.start_ns or file.span[0] > m.end_ns)):
        return None
    if report is not None:
        report.files += 1
    damaged_at = file.index.damaged_at if file.index is not None else None
    if file.index is not None and damaged_at is not None and report is not None:
        problem = "damaged (the index holds the records before it)"
        report.damaged(CaptureError(file.path, damaged_at, problem), readable=file.index.records > 0)
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
    except CaptureError as exc:
        if report is None:
            raise
        report.damaged(exc, readable=False)
        return None
    plan = getattr(capture.source, "plan", None)
    if plan is not None and offsets is not None:
        # A compressed or archived capture: the frames of these records are fetched together, the
        # first ones now (a damaged frame among them is named before the answer's first byte).
        try:
            plan(offsets)
        except CaptureError as exc:
            if report is None:
                capture.close()
                raise
            report.damaged(exc, readable=exc.offset > int(offsets[0]))
            damaged_at = exc.offset if damaged_at is None else min(damaged_at, exc.offset)
        except BaseException:
            capture.close()
            raise
    readable = UpToDamage(capture, damaged_at, report) if report is not None else None
    try:
        if index is not None and isinstance(capture, PcapngCapture):
            capture.learn_blocks(index.meta_offsets)
        elif isinstance(capture, PcapngCapture):
            capture.learn_interfaces()  # the answer's precision and link types, before it is written
    except CaptureError:
        # The index names blocks that are not there: it is damaged, the capture may be fine. What
        # was learned are real blocks, which the scan meets again.
        assert isinstance(capture, PcapngCapture)
        capture.learn_interfaces()
        return FilePlan(capture, readable=readable)
    except BaseException:
        capture.close()
        raise
    return FilePlan(capture, index, offsets, readable)


def _in_slices(offsets: np.ndarray, size: int = 4096) -> Iterator[int]:
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

    Later fragments follow the fragment rule of ``engine.dissect``; one met before any first
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
    files: Sequence[CaptureFile | str | os.PathLike],
    q: Selection,
    *,
    chunk_size: int = 1 << 16,
    limits: Limits | None = None,
    pcapng_name: str | None = None,
    damage: DamageReport | None = None,
    bulk: bool = True,
) -> Generator[bytes, None, None]:
    """A pcap stream (header, then the selected records in time order across ``files``), in chunks.

    ``files`` are the store's ``CaptureFile`` records, or paths (their index is then looked up).
    ``limits`` end it early at a packet boundary; ``pcapng_name`` makes it pcapng whatever the link
    types, its interfaces named so.
    Damaged files are read up to their damage, noted in ``damage`` (a fresh report when None).
    ``bulk=False`` reads every file record by record (the same bytes; for comparing the two paths).
    """
    m = Matcher.of(q)
    report = damage if damage is not None else DamageReport()
    plans: list[FilePlan] = []
    try:
        known = [f if isinstance(f, CaptureFile) else CaptureFile.at(f) for f in files]
        for file in known:
            plan = plan_file(file, m, report)
            if plan is not None:
                plans.append(plan)
        linktypes, nanosecond = _output_format(known, plans)
        if pcapng_name is None:
            writer = CaptureWriter(linktypes, nanosecond)
        else:
            writer = PcapngWriter(linktypes, nanosecond, pcapng_name)
        sources = [
            (plan.pieces(m, writer, min(chunk_size, PIECE_BYTES), bulk), plan.earliest_ns) for plan in plans
        ]
        for chunk in answered(writer.header(), merged(sources), limits, chunk_size):
            if not report.started:
                report.start()
            yield chunk
    finally:
        for plan in plans:
            plan.capture.close()


@dataclass(frozen=True)
class Estimate:
    """Upper bounds of what an answer holds, from the indexes alone (no record is read)."""

    packets: int
    bytes: int  # of the answer: frames, record headers and file header
    header: int = 0  # of those bytes, the file header's
    unindexed: tuple[str, ...] = ()  # names of the files counted whole: without an index, a loose bound

    def within(self, limits: Limits | None) -> Estimate:
        """The estimate of the answer ended at ``limits``: never more packets or bytes than they let through."""
        if limits is None:
            return self
        packets, size = limits.bound(self.packets, self.bytes, self.header)
        return replace(self, packets=packets, bytes=size)


def estimate(
    files: Sequence[CaptureFile | str | os.PathLike], q: Selection, *, pcapng: bool = False
) -> Estimate:
    """How many packets and bytes the answer to ``q`` over ``files`` can hold, at most.

    An indexed file counts the selected flows that overlap the window (their packets, their
    original lengths); a file without a current index (the live file) counts whole (its size; as
    many packets as record headers fit in it) and is named in ``unindexed``.
    """
    m = Matcher.of(q)
    packets = frame_bytes = 0
    linktypes: set[int] = set()
    unindexed: list[str] = []
    for file in (f if isinstance(f, CaptureFile) else CaptureFile.at(f) for f in files):
        if file.excluded or (
            file.span is not None and (file.span[1] < m.start_ns or file.span[0] > m.end_ns)
        ):
            continue
        index = file.index
        if index is not None and index.usable_for_queries:
            try:
                flow_packets, flow_bytes = index.estimate(_indexed_flows(index, m))
            except IndexUnusable:
                pass
            else:
                packets += flow_packets
                frame_bytes += flow_bytes
                linktypes.update(index.linktypes)
                continue
        try:
            size = capture_length(file.path)
        except (OSError, ValueError):
            continue
        packets += max(0, size - 24) // 16
        frame_bytes += size
        linktypes.update((0, 1))  # unknown: count as mixed
        unindexed.append(file.path.name)
    overhead = PCAPNG_RECORD_OVERHEAD if pcapng or len(linktypes) > 1 else PCAP_RECORD_OVERHEAD
    header = 64 + 64 * max(1, len(linktypes))
    return Estimate(packets, frame_bytes + overhead * packets + header, header, tuple(unindexed))
