"""An hour's summary: the keys its files' indexes hold, so a query skips an hour that cannot match.

``FILER_DIR/YYYY/MM/DD/HH/<prefix>.summary`` sits beside the hour's captures and indexes, written
by the filer after the indexes of a pass and by ``reindex`` (``node.store.refresh_summary``). It is
a sorted set of every key a lookup of ``engine.index`` can start from, over the files it names:

    header, 32 bytes (SUMMARY): magic b"PARHOURS", version u32 (1), crc u32 (CRC-32 of the body
      as stored), body u64 (bytes stored), reserved u64
    body, zlib-compressed: counts u32[6] (files, IPv4 addresses, IPv6 addresses, ports, Community
      ID lookups, prefix bytes), protocols u8[32] (a bit per IP protocol), the files' name prefix
      (UTF-8), then, each sorted array stored as its first value and the differences after it
      (which compress well):
      epochs     i8[files]       the files' names' epochs (``<prefix>.<epoch>``), sorted
      spans      i4[2 * files]   each file's records' span in whole seconds after its epoch, the
                                 first rounded down, the last up (no records: 1, 0)
      v4         u4[...]         the IPv4 addresses of the flows' ends, sorted, unique
      v6         u8[2 * ...]     the IPv6 addresses as (high, low) halves, sorted, unique (as is)
      ports      u2[...]         the flows' ports, sorted, unique
      cids       u2[...]         the ``cid`` lookup values (first two bytes of Community IDs), unique

The summary only says "none of these files can match": a key in the set is a lookup to make (a
false positive costs the files' index lookups, never a wrong answer), and a file it does not
name (filed since, or without an index) is searched as before. Exactness never depends on it: a
summary of another version, or one whose checksum fails, is not used.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..communityid import parse_community_id
from ..durable import atomic_write
from ..flow import Selection
from .flows import ICMP_PROTOCOLS
from .opening import FlowIndex

SUMMARY_VERSION = 1
MAGIC = b"PARHOURS"
SUMMARY_SUFFIX = ".summary"
SUMMARY = struct.Struct("<8sIIQQ")
COUNTS = struct.Struct("<6I")
NS = 1_000_000_000


def summary_path(directory: str | os.PathLike, prefix: str) -> Path:
    """Where the summary of the hour directory ``directory`` lives."""
    return Path(directory, prefix + SUMMARY_SUFFIX)


@dataclass(frozen=True)
class HourSummary:
    """The keys of an hour's indexed files (see the module docstring)."""

    names: tuple[str, ...]
    spans: np.ndarray  # int64 [files, 2]
    v4: np.ndarray  # uint32, sorted
    v6: np.ndarray  # uint64 [n, 2] (high, low), sorted
    ports: np.ndarray  # uint16, sorted
    cids: np.ndarray  # uint16, sorted
    protocols: frozenset[int]

    def span_of(self, name: str) -> tuple[int, int] | None:
        """(first_ns, last_ns) of a file it names; None for another."""
        at = _find(self.names, name)
        return None if at is None else (int(self.spans[at, 0]), int(self.spans[at, 1]))

    def may_match(self, s: Selection) -> bool:
        """False when no flow of its files can be selected by ``s`` (its window aside)."""
        p = _probe(s)
        if p.protocols is not None and not self.protocols.intersection(p.protocols):
            return False
        if not p.icmp_only:  # ICMP's ports are per packet: the index holds none
            for port in p.ports:
                if not _has(self.ports, port):
                    return False
        for low, high in p.ranges:
            if not self._has_address(low, high):
                return False
        return p.cid is None or bool(self.protocols.intersection(ICMP_PROTOCOLS)) or _has(self.cids, p.cid)

    def _has_address(self, low: int, high: int) -> bool:
        v4_low, v4_high = (0xFFFF << 32), (0xFFFF << 32) | 0xFFFFFFFF
        if low <= v4_high and high >= v4_low and len(self.v4):
            a, b = max(low, v4_low) - v4_low, min(high, v4_high) - v4_low
            at = int(np.searchsorted(self.v4, a))
            if at < len(self.v4) and self.v4[at] <= b:
                return True
        if len(self.v6):
            keys = self._v6_keys()
            at = bisect_left(keys, low)
            if at < len(keys) and keys[at] <= high:
                return True
        return False

    def _v6_keys(self) -> list[int]:
        """The IPv6 addresses as sorted 128-bit ints, made once per summary (summaries are kept)."""
        keys = self.__dict__.get("_keys6")
        if keys is None:
            keys = [hi << 64 | lo for hi, lo in self.v6.tolist()]
            object.__setattr__(self, "_keys6", keys)
        return keys


class _Probe(NamedTuple):
    """What a summary checks of a selection, worked out once per selection."""

    protocols: tuple[int, ...] | None
    icmp_only: bool
    ports: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]  # each end's addresses as 128-bit ints
    cid: int | None  # the Community ID's lookup value


@functools.lru_cache(maxsize=256)
def _probe(s: Selection) -> _Probe:
    protocols = s.protocols
    cid = None
    if s.community_id is not None:
        cid = int.from_bytes(parse_community_id(s.community_id)[:2], "big")
    return _Probe(
        protocols,
        protocols is not None and set(protocols) <= set(ICMP_PROTOCOLS),
        tuple(port for port in (s.src_port, s.dst_port) if port is not None),
        tuple(
            (int.from_bytes(bounds[0], "big"), int.from_bytes(bounds[1], "big"))
            for bounds in (s.src_range, s.dst_range)
            if bounds is not None
        ),
        cid,
    )


def _has(values: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(values, value))
    return at < len(values) and int(values[at]) == value


def _find(names: tuple[str, ...], name: str) -> int | None:
    at = bisect_left(names, name)
    return at if at < len(names) and names[at] == name else None


def index_keys(index: FlowIndex) -> HourSummary:
    """The summary of one file's index (its name left empty)."""
    c, n4 = index.columns, index.n_v4
    v4 = np.unique(np.concatenate([c["a4"], c["b4"]]).astype(np.uint32))
    six = [np.stack([c[end + "6hi"], c[end + "6lo"]], axis=1) for end in ("a", "b")]
    v6 = np.unique(np.concatenate(six).astype(np.uint64), axis=0) if index.n_flows > n4 else _no_v6()
    ports = np.unique(np.concatenate([c["aport"], c["bport"]]).astype(np.uint16))
    cids = np.unique(np.asarray(c["cid"]).astype(np.uint16))
    protocols = frozenset(np.unique(c["proto"]).tolist())
    span = index.span or (0, -1)
    return HourSummary(("",), np.array([span], dtype=np.int64), v4, v6, ports, cids, protocols)


def _no_v6() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.uint64)


def merged(parts: Iterable[tuple[str, HourSummary]]) -> HourSummary:
    """One summary of several (each named by the name given with it); names sorted, unique."""
    parts = sorted({name: part for name, part in parts}.items())
    names, spans = [], []
    for name, part in parts:
        for own, span in zip(part.names, part.spans, strict=True):
            names.append(own or name)
            spans.append(span)
    order = sorted(range(len(names)), key=names.__getitem__)
    if not parts:
        return HourSummary((), np.zeros((0, 2), np.int64), *_empty_keys())
    v6s = [p.v6 for _, p in parts if len(p.v6)]
    return HourSummary(
        tuple(names[i] for i in order),
        np.array([spans[i] for i in order], dtype=np.int64).reshape(-1, 2),
        np.unique(np.concatenate([p.v4 for _, p in parts])).astype(np.uint32),
        np.unique(np.concatenate(v6s), axis=0).astype(np.uint64) if v6s else _no_v6(),
        np.unique(np.concatenate([p.ports for _, p in parts])).astype(np.uint16),
        np.unique(np.concatenate([p.cids for _, p in parts])).astype(np.uint16),
        frozenset().union(*(p.protocols for _, p in parts)),
    )


def _empty_keys():
    return (np.zeros(0, np.uint32), _no_v6(), np.zeros(0, np.uint16), np.zeros(0, np.uint16), frozenset())


def _deltas(values: np.ndarray) -> np.ndarray:
    return np.diff(values, prepend=values.dtype.type(0)) if len(values) else values


def _name_parts(names: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """(prefix, epochs) of ``<prefix>.<epoch>`` names of one prefix; ValueError for others."""
    prefixes = {name.rpartition(".")[0] for name in names}
    if len(prefixes) > 1:
        raise ValueError("names of several prefixes")
    return (prefixes.pop() if prefixes else ""), np.array(
        [int(n.rpartition(".")[2]) for n in names], np.int64
    )


def _second_spans(epochs: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """The spans as whole seconds after each epoch (first down, last up), widened when out of range."""
    out = np.empty((len(epochs), 2), dtype=np.int64)
    out[:, 0] = spans[:, 0] // NS - epochs
    out[:, 1] = -(-spans[:, 1] // NS) - epochs
    empty = spans[:, 0] > spans[:, 1]
    out[empty] = (1, 0)
    wide = ~empty & ((out[:, 0] < -(2**31)) | (out[:, 1] >= 2**31))
    out[wide] = (-(2**31), 2**31 - 1)
    return out.astype(np.int32)


def encode(summary: HourSummary) -> bytes:
    """The summary file's bytes."""
    prefix, epochs = _name_parts(summary.names)
    order = np.argsort(epochs, kind="stable")
    epochs, spans = epochs[order], summary.spans[order]
    bits = np.zeros(256, dtype=bool)
    bits[list(summary.protocols)] = True
    head = prefix.encode()
    counts = COUNTS.pack(
        len(epochs), len(summary.v4), len(summary.v6), len(summary.ports), len(summary.cids), len(head)
    )
    raw = b"".join(
        (
            counts,
            np.packbits(bits).tobytes(),
            head,
            _deltas(epochs).astype("<i8").tobytes(),
            _second_spans(epochs, spans).astype("<i4").tobytes(),
            _deltas(summary.v4.astype(np.uint32)).astype("<u4").tobytes(),
            summary.v6.astype("<u8").tobytes(),
            _deltas(summary.ports.astype(np.uint16)).astype("<u2").tobytes(),
            _deltas(summary.cids.astype(np.uint16)).astype("<u2").tobytes(),
        )
    )
    body = zlib.compress(raw, 9)
    return SUMMARY.pack(MAGIC, SUMMARY_VERSION, zlib.crc32(body), len(body), 0) + body


class SummaryUnusable(ValueError):
    """A summary of another version, damaged, or not a summary: the hour is searched file by file."""


def decode(data: bytes) -> HourSummary:
    if len(data) < SUMMARY.size:
        raise SummaryUnusable("not a summary")
    magic, version, crc, length, _ = SUMMARY.unpack_from(data)
    if magic != MAGIC or version != SUMMARY_VERSION:
        raise SummaryUnusable(f"summary version {version}, expected {SUMMARY_VERSION}")
    body = data[SUMMARY.size :]
    if len(body) != length or zlib.crc32(body) != crc:
        raise SummaryUnusable("the summary does not match its checksum")
    try:
        raw = zlib.decompress(body)
        files, n4, n6, nports, ncids, nprefix = COUNTS.unpack_from(raw)
        at = COUNTS.size
        protocols = frozenset(np.flatnonzero(np.unpackbits(np.frombuffer(raw, np.uint8, 32, at))).tolist())
        at += 32
        prefix = raw[at : at + nprefix].decode()
        at += nprefix
        arrays = []
        for dtype, count in (
            ("<i8", files),
            ("<i4", 2 * files),
            ("<u4", n4),
            ("<u8", 2 * n6),
            ("<u2", nports),
            ("<u2", ncids),
        ):
            arrays.append(np.frombuffer(raw, dtype, count, at))
            at += np.dtype(dtype).itemsize * count
        if at != len(raw):
            raise SummaryUnusable("the summary's sections do not add up")
    except (zlib.error, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise SummaryUnusable(f"a damaged summary: {exc}") from None
    epochs, seconds, v4, v6, ports, cids = arrays
    epochs = np.cumsum(epochs, dtype=np.int64)
    seconds = seconds.reshape(-1, 2).astype(np.int64)
    spans = np.stack([(epochs + seconds[:, 0]) * NS, (epochs + seconds[:, 1]) * NS], axis=1)
    names = tuple(f"{prefix}.{epoch}" for epoch in epochs.tolist())
    order = sorted(range(files), key=names.__getitem__)
    return HourSummary(
        tuple(names[i] for i in order),
        spans[order].reshape(-1, 2),
        np.cumsum(v4, dtype=np.uint32),
        v6.reshape(-1, 2),
        np.cumsum(ports, dtype=np.uint16),
        np.cumsum(cids, dtype=np.uint16),
        protocols,
    )


def read_summary(path: str | os.PathLike) -> HourSummary | None:
    """The summary at ``path``; None when it is missing or unusable."""
    try:
        with open(path, "rb") as f:
            return decode(f.read())
    except (OSError, SummaryUnusable):
        return None


def write_summary(path: str | os.PathLike, summary: HourSummary) -> int:
    """Write ``summary`` at ``path`` atomically; its size in bytes."""
    data = encode(summary)
    with atomic_write(path) as f:
        f.write(data)
    return len(data)


__all__ = [
    "SUMMARY_SUFFIX",
    "SUMMARY_VERSION",
    "HourSummary",
    "SummaryUnusable",
    "index_keys",
    "merged",
    "read_summary",
    "summary_path",
    "write_summary",
]
