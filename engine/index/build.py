"""Building a capture file's index in one pass over the memory-mapped capture, written atomically."""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..durable import atomic_write
from ..flow import PROTO_ICMP, PROTO_ICMPV6
from ..flowfields import FlowColumns, compiled_flow_columns, fill_slow_rows
from ..formats import Capture, CaptureError, PcapCapture, PcapngCapture, open_capture
from ..recordtable import RecordTable, walk_pcap, walk_pcapng
from .flows import flow_table
from .format import (
    FLAG_DAMAGED,
    FLAG_PCAPNG,
    FLAG_SIMPLE_BLOCKS,
    HEADER_SIZE,
    INDEX_VERSION,
    MAGIC,
    IndexHeader,
    encode_column,
    encode_header,
    header_checksum,
    index_path,
    temp_index_path,
)
from .icmp import message_columns, message_flows
from .opening import FlowIndex, content_digest


class CutShort(CaptureError):
    """The file ends inside a record: a finished file's damage, a live file still being written."""


@dataclass(frozen=True)
class IndexStats:
    packets: int
    capture_bytes: int
    flows: int
    first_ns: int | None
    last_ns: int | None
    index_bytes: int
    damage: str | None = None  # what is wrong where, for a damaged capture (indexed up to it)


def build_index(capture: str | os.PathLike, out: str | os.PathLike | None = None) -> IndexStats:
    """Index ``capture`` (read once) into ``out`` (default: beside it), atomically.

    ``capture`` is a finished file: one damaged part-way (a record that cannot be right, or its end
    inside a record) is indexed up to the damage, which the index records (``FLAG_DAMAGED``) and
    ``damage`` names. Raises CaptureError, writing nothing, when not even its file header can be read.
    """
    capture = Path(capture)
    out = Path(out) if out is not None else index_path(capture)
    header, columns, damage = _index_of(capture)
    if damage is not None:
        header = header._replace(flags=header.flags | FLAG_DAMAGED, damaged_at=damage.offset)
    # 0600 whatever the umask (a reindex run by cron has the cron's): an index lists who talked to whom.
    with atomic_write(out, mode=0o600, temp=temp_index_path(out)) as f:
        index_bytes = 0
        for chunk in _encoded(header, columns):
            f.write(chunk)
            index_bytes += len(chunk)
    packets = header.records
    return IndexStats(
        packets=packets,
        capture_bytes=header.capture_size,
        flows=header.flows,
        first_ns=header.first_ns if packets else None,
        last_ns=header.last_ns if packets else None,
        index_bytes=index_bytes,
        damage=str(damage) if damage is not None else None,
    )


def index_in_memory(capture: str | os.PathLike) -> FlowIndex:
    """The index ``build_index`` would write for ``capture``, built in memory and opened.

    For a file without a current index (the live file): the same flow table, lookups and offsets,
    so it answers as an indexed file does. A capture damaged part-way is indexed up to its damage,
    which the index records (``damaged_at``) as ``build_index`` does; a last record cut short is a
    file still being written, not damage. Raises CaptureError when not even its file header can
    be read.
    """
    header, columns, damage = _index_of(Path(capture))
    if damage is not None and not isinstance(damage, CutShort):
        header = header._replace(flags=header.flags | FLAG_DAMAGED, damaged_at=damage.offset)
    return FlowIndex(os.fspath(capture) + " (in memory)", data=b"".join(_encoded(header, columns)))


def _index_of(capture: Path) -> tuple[IndexHeader, dict[str, np.ndarray], CaptureError | None]:
    """(header, columns, damage) of the index of ``capture``, read once; damage None when undamaged.

    A file ending inside a record is ``CutShort`` at that record's offset (a finished file's
    damage, a live file's next record still being written).
    """
    with open_capture(capture) as cap:
        size = cap.size()
        if isinstance(cap, PcapngCapture):
            table = walk_pcapng(cap)
            with _mapped(cap) as mm:
                columns, digest = _dissect(mm, table), content_digest(lambda o, n: mm[o : o + n], size)
                messages = _icmp_messages(mm, table, columns)
        else:
            assert isinstance(cap, PcapCapture)
            with _mapped(cap) as mm:
                table = walk_pcap(cap, mm, size)
                columns = _dissect(mm, table)
                digest = content_digest(lambda o, n: mm[o : o + n], size)
                messages = _icmp_messages(mm, table, columns)
        header, sections = _sections(table, columns, size, digest, cap, messages)
        if table.damage is None and table.end < size:
            return header, sections, CutShort(capture, table.end, "the file ends inside a record")
        return header, sections, table.damage


def _encoded(header: IndexHeader, columns: dict[str, np.ndarray]) -> Iterator[bytes]:
    """The index file's bytes, in pieces: header, column directory, the columns 8-byte aligned."""
    columns = {name: np.ascontiguousarray(column) for name, column in columns.items()}
    directory = b"".join(
        encode_column(name, column, zlib.crc32(column.data)) for name, column in columns.items()
    )
    head = encode_header(header._replace(checksum=0))
    head = encode_header(header._replace(checksum=header_checksum(head, directory)))
    yield head + directory + b"\0" * (-(HEADER_SIZE + len(directory)) % 8)
    for column in columns.values():
        data = column.tobytes()
        yield data + b"\0" * (-len(data) % 8)


STREAM_CHUNK = 8 << 20  # bytes of a non-local capture read at a time into its temporary copy


class _mapped:
    """The capture memory-mapped read-only (an empty mapping for an empty file).

    A capture that is not a local file (a compressed one, reindexed) is first copied, STREAM_CHUNK
    bytes at a time, into an anonymous temporary file in its own directory (``O_TMPFILE``: gone
    with the process, even a killed one), which is then mapped: the build's memory stays flat
    whatever the capture's size, and the disk holds its decompressed bytes while it runs.
    """

    def __init__(self, cap: Capture):
        self.cap = cap
        self.copy: BinaryIO | None = None

    def __enter__(self) -> mmap.mmap | bytes:
        size = self.cap.size()
        self.mm: mmap.mmap | bytes = b""
        fd = self.cap.fileno()
        if size and fd is None:
            fd, size = self._copied(size)
        if size and fd is not None:
            self.mm = mapping = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
            mapping.madvise(mmap.MADV_SEQUENTIAL)
        return self.mm

    def _copied(self, size: int) -> tuple[int, int]:
        """A temporary local copy of the capture's ``size`` bytes, read in bounded chunks: (its
        descriptor, the bytes copied)."""
        directory = os.path.dirname(os.path.abspath(self.cap.path))
        try:
            copy = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by __exit__
        except OSError:  # a directory this process may not write to: the system's temporary one
            copy = tempfile.TemporaryFile()  # noqa: SIM115
        self.copy = copy
        at = 0
        while at < size:
            chunk = self.cap.read(at, min(STREAM_CHUNK, size - at))
            if not chunk:
                break
            copy.write(chunk)
            at += len(chunk)
        copy.flush()
        return copy.fileno(), at  # fewer than ``size`` when the source gave fewer: mapped as they are

    def __exit__(self, *exc) -> None:
        if isinstance(self.mm, mmap.mmap):
            # An exception's frames may still see the mapping; it is unmapped when they go.
            with contextlib.suppress(BufferError):
                self.mm.close()
        if self.copy is not None:
            self.copy.close()


def _dissect(mm, table: RecordTable) -> FlowColumns:
    columns, slow_rows = compiled_flow_columns(mm, len(mm), table)
    fill_slow_rows(mm, table, columns, slow_rows)
    return columns


def _icmp_messages(mm, table: RecordTable, fields: FlowColumns) -> dict[tuple, list]:
    """The ICMP message flows of the capture's ICMP records (``engine.index.icmp``)."""
    proto = fields.proto
    at = np.flatnonzero(fields.has_flow & ((proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)))
    if not len(at):
        return {}
    start, caplen = table.data[at].tolist(), table.caplen[at].tolist()
    records = zip(
        table.linktype[at].tolist(),
        table.ts_ns[at].tolist(),
        table.orig_len[at].tolist(),
        (bytes(mm[a : a + n]) for a, n in zip(start, caplen, strict=True)),
        strict=True,
    )
    return message_flows(list(records))


def _sections(
    table: RecordTable,
    fields: FlowColumns,
    size: int,
    digest: bytes,
    capture: Capture,
    messages: dict[tuple, list],
) -> tuple[IndexHeader, dict[str, np.ndarray]]:
    columns, n_flows, n_v4 = flow_table(table, fields, capture.nanosecond)
    columns |= message_columns(messages, columns, n_v4)
    flags = (FLAG_PCAPNG if isinstance(capture, PcapngCapture) else 0) | (
        FLAG_SIMPLE_BLOCKS if table.simple_blocks else 0
    )
    columns = {
        "linktype": np.unique(table.linktype).astype("<u4"),
        "metablk": np.array(table.meta_offsets, dtype="<u8"),
        **columns,
    }
    header = IndexHeader(
        magic=MAGIC,
        version=INDEX_VERSION,
        flags=flags,
        capture_size=size,
        digest=digest,
        records=len(table.offset),
        first_ns=int(table.ts_ns.min()) if len(table.ts_ns) else 0,
        last_ns=int(table.ts_ns.max()) if len(table.ts_ns) else 0,
        flows=n_flows,
        v4_flows=n_v4,
        time_unit=1 if capture.nanosecond else 1000,
        columns=len(columns),
    )
    return header, columns
