"""Where every record of a capture file is, found in one pass; bytes gathered from many records at once.

The walk over the classic pcap record headers follows each record's length to the next one, a
loop compiled to machine code (``engine.dissection.native``); everything after it works on whole columns.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from dataclasses import dataclass

import numpy as np

from ..formats import PCAP_HEADER_SIZE, RECORD_HEADER_SIZE, CaptureError, PcapCapture, PcapngCapture
from ..formats.capture import MAX_CAPLEN, MAX_TS_NS
from ..formats.pcapng import BLOCK_HEAD_FIELDS, BODY_START, SPB

BLOCK_HEAD_SIZE = struct.calcsize(BLOCK_HEAD_FIELDS)


@dataclass
class RecordTable:
    """Where each record of a capture is: record start, frame bytes, lengths, time, link type."""

    offset: np.ndarray  # int64, start of the record header / block
    data: np.ndarray  # int64, start of the frame bytes
    caplen: np.ndarray  # int64
    orig_len: np.ndarray  # int64
    ts_ns: np.ndarray  # int64
    linktype: np.ndarray  # int64
    meta_offsets: list[int]  # pcapng section header / interface blocks
    simple_blocks: bool  # pcapng Simple Packet Blocks (no timestamp of their own) seen
    damage: CaptureError | None = None  # the record the walk stopped at: it cannot be right
    end: int = 0  # where the last complete record ends (a file ending inside a record: before its size)


def _first(bad: np.ndarray) -> int | None:
    found = np.flatnonzero(bad)
    return int(found[0]) if len(found) else None


def walk_pcap(capture: PcapCapture, mm: mmap.mmap | bytes, size: int) -> RecordTable:
    """Find every complete record of a classic pcap file, up to the first that cannot be right (``damage``)."""
    from . import native  # numba is loaded by index builds only

    buf = np.frombuffer(mm, dtype=np.uint8, count=size)
    rec, head = native.record_headers(buf, PCAP_HEADER_SIZE, capture.order == ">")
    del buf  # the mapping is closed after the walk: no view of it may outlive it
    caplen = head[:, 2]
    damage = None
    bad = _first(caplen > MAX_CAPLEN)  # the walk stopped at it: what follows is not records
    if bad is not None:
        damage = CaptureError(capture.path, int(rec[bad]), f"record length {int(caplen[bad])} is impossible")
        rec, head, caplen = rec[:bad], head[:bad], caplen[:bad]
    # The walk stops past the end; a last record cut short belongs to a file still being written.
    elif len(rec) and rec[-1] + RECORD_HEADER_SIZE + caplen[-1] > size:
        rec, head, caplen = rec[:-1], head[:-1], caplen[:-1]
    ts_ns = head[:, 0] * 1_000_000_000 + head[:, 1] * capture.scale
    bad = _first((ts_ns < 0) | (ts_ns >= MAX_TS_NS))
    if bad is not None:
        problem = f"packet time {int(ts_ns[bad])} ns is outside what a pcap can hold"
        damage = CaptureError(capture.path, int(rec[bad]), problem)
        rec, head, caplen, ts_ns = rec[:bad], head[:bad], caplen[:bad], ts_ns[:bad]
    end = int(rec[-1] + RECORD_HEADER_SIZE + caplen[-1]) if len(rec) else PCAP_HEADER_SIZE
    return RecordTable(
        offset=rec,
        data=rec + RECORD_HEADER_SIZE,
        caplen=caplen,
        orig_len=head[:, 3],
        ts_ns=ts_ns,
        linktype=np.full(len(rec), capture.linktype, dtype=np.int64),
        meta_offsets=[],
        simple_blocks=False,
        damage=damage,
        end=min(end, size),
    )


def walk_pcapng(capture: PcapngCapture) -> RecordTable:
    """Every complete packet block of a pcapng file, up to the first block that cannot be right."""
    columns = [array("q") for _ in range(6)]
    simple, damage = False, None
    blocks = capture.packet_blocks()
    while True:
        try:
            record, kind = next(blocks)
        except StopIteration:
            break
        except CaptureError as exc:
            damage = exc
            break
        simple = simple or kind == SPB
        for column, value in zip(
            columns,
            (
                record.offset,
                record.offset + BLOCK_HEAD_SIZE + BODY_START[kind],
                len(record.data),
                record.orig_len,
                record.ts_ns,
                record.linktype,
            ),
            strict=True,
        ):
            column.append(value)
    offset, data, caplen, orig_len, ts_ns, linktype = (
        np.frombuffer(c, dtype=np.int64) if len(c) else np.zeros(0, np.int64) for c in columns
    )
    return RecordTable(
        offset,
        data,
        caplen,
        orig_len,
        ts_ns,
        linktype,
        meta_offsets=capture.meta_offsets,
        simple_blocks=simple,
        damage=damage,
        end=capture.read_to,
    )


def gather(mm: mmap.mmap | bytes, size: int, at: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes from each position ``at`` as an (n, width) uint8 array; zeros past the end of the file.

    One fancy-indexing gather through a view whose elements are ``width``-byte strings starting at
    every byte of the file (stride 1), so each record costs one copy, not one per byte.
    """
    last = size - width  # the last position where a whole element fits
    if last < 0:
        out = np.zeros((len(at), width), dtype=np.uint8)
        inside = np.zeros(len(at), dtype=bool)
    else:
        view = np.ndarray((last + 1,), dtype=f"V{width}", buffer=mm, strides=(1,))
        inside = at <= last
        if inside.all():
            return view[at].view(np.uint8).reshape(-1, width)
        out = np.zeros((len(at), width), dtype=np.uint8)
        out[inside] = view[at[inside]].view(np.uint8).reshape(-1, width)
        del view
    for row in np.flatnonzero(~inside).tolist():  # the last records of the file
        tail = mm[int(at[row]) : size]
        out[row, : len(tail)] = np.frombuffer(tail, dtype=np.uint8)
    return out
