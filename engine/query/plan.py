"""Answer a flow query over capture files: plan per file, read candidates, merge in time order, stream.

Which files can answer a window is the capture tree's decision (``node.store``): it hands the
engine ``CaptureFile(path, epoch, span, index)`` records, and the engine reads them without
parsing names or headers again. A file with a current index is answered from it: the flow is
looked up, only its records are read, and each one is checked against the query (fields and time)
before it is kept. A file without one (the file still being written, an index of another version,
a damaged index) is scanned record by record with the same rules, so both give the same answer;
later fragments follow the fragment rule of ``engine.dissection.packet`` either way.

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

from ..formats import (
    PCAP_HEADER_SIZE,
    RECORD_HEADER_SIZE,
    Capture,
    CaptureError,
    CaptureWriter,
    IncompleteHeader,
    PcapCapture,
    PcapngCapture,
    Record,
    open_capture,
)
from ..formats.source import capture_length
from ..formats.writer import PcapngWriter
from ..index import FlowIndex, IndexUnusable, open_index
from ..selection.exact import Matcher
from ..selection.match import SelectionMatcher
from ..selection.selectors import Selection
from .answer import PCAP_RECORD_OVERHEAD, PCAPNG_RECORD_OVERHEAD, Limits
from .damage import DamageReport, UpToDamage
from .few_candidates import few_record_pieces
from .many_candidates import bulk_readable, indexed_pieces
from .per_record import in_slices, indexed_records, scanned_records
from .pieces import PIECE_BYTES, Piece, answered, encoded_pieces, merged
from .unindexed import scannable, scanned_pieces


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
            for record in indexed_records(self.capture, in_slices(offsets), m):
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
    index, offsets = _from_index(file.index, m)
    if offsets is not None and not len(offsets):
        return None
    capture = _opened(file, report)
    if capture is None:
        return None
    if offsets is not None:
        damaged_at = _fetch_planned(capture, offsets, report, damaged_at)
    readable = UpToDamage(capture, damaged_at, report) if report is not None else None
    if not _learned(capture, index):
        return FilePlan(capture, readable=readable)
    return FilePlan(capture, index, offsets, readable)


def _from_index(
    index: FlowIndex | None, m: Matcher | SelectionMatcher
) -> tuple[FlowIndex | None, np.ndarray | None]:
    """(the index, its candidate offsets) when the index can answer; (None, None) to read without it."""
    if index is None or not index.usable_for_queries:
        return None, None
    try:
        return index, _indexed_offsets(index, m)
    except IndexUnusable:
        return None, None  # damaged inside: read like a file without an index


def _opened(file: CaptureFile, report: DamageReport | None) -> Capture | None:
    """The capture opened; None for a file with nothing in it yet, or (noted in ``report``) damaged."""
    try:
        return open_capture(file.path)
    except IncompleteHeader:
        return None  # a file just created: nothing in it yet
    except CaptureError as exc:
        if report is None:
            raise
        report.damaged(exc, readable=False)
        return None


def _fetch_planned(
    capture: Capture, offsets: np.ndarray, report: DamageReport | None, damaged_at: int | None
) -> int | None:
    """A compressed or archived capture's frames of these records fetched together, the first ones now.

    A damaged frame among them is named before the answer's first byte; returns where the
    capture's damage begins, so far as known.
    """
    plan = getattr(capture.source, "plan", None)
    if plan is None:
        return damaged_at
    try:
        plan(offsets)
    except CaptureError as exc:
        if report is None:
            capture.close()
            raise
        report.damaged(exc, readable=exc.offset > int(offsets[0]))
        return exc.offset if damaged_at is None else min(damaged_at, exc.offset)
    except BaseException:
        capture.close()
        raise
    return damaged_at


def _learned(capture: Capture, index: FlowIndex | None) -> bool:
    """A pcapng capture's interfaces learned before the answer is written; False when the index
    names blocks that are not there (it is damaged, the capture may be fine: read it without)."""
    try:
        if index is not None and isinstance(capture, PcapngCapture):
            capture.learn_blocks(index.meta_offsets)
        elif isinstance(capture, PcapngCapture):
            capture.learn_interfaces()  # the answer's precision and link types, before it is written
    except CaptureError:
        # What was learned are real blocks, which the scan meets again.
        assert isinstance(capture, PcapngCapture)
        capture.learn_interfaces()
        return False
    except BaseException:
        capture.close()
        raise
    return True


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
        packets += max(0, size - PCAP_HEADER_SIZE) // RECORD_HEADER_SIZE
        frame_bytes += size
        linktypes.update((0, 1))  # unknown: count as mixed
        unindexed.append(file.path.name)
    overhead = PCAPNG_RECORD_OVERHEAD if pcapng or len(linktypes) > 1 else PCAP_RECORD_OVERHEAD
    header = 64 + 64 * max(1, len(linktypes))
    return Estimate(packets, frame_bytes + overhead * packets + header, header, tuple(unindexed))
