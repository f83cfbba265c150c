"""An hour's summary: the keys its files' indexes hold, so a query skips an hour that cannot match.

``FILER_DIR/YYYY/MM/DD/HH/<prefix>.summary`` sits beside the hour's captures and indexes, written
by the filer after the indexes of a pass and by ``reindex`` (``node.store.refresh_summary``). It is
a sorted set of every key a lookup of ``engine.index`` can start from, over the files it names:

    header, 32 bytes (SUMMARY): magic b"PARHOURS", version u32 (1), crc u32 (CRC-32 of the body
      as stored), body u64 (bytes stored), reserved u64
    body, zlib-compressed: counts u32[6] (files, IPv4 addresses, IPv6 addresses, ports, Community
      ID lookups, name bytes), protocols u8[32] (a bit per IP protocol), then
      spans      i8[2 * files]   (first_ns, last_ns) of each file's records, in name order
      v4         u4[...]         the IPv4 addresses of the flows' ends, sorted, unique
      v6         u8[2 * ...]     the IPv6 addresses as (high, low) halves, sorted, unique
      ports      u2[...]         the flows' ports, sorted, unique
      cids       u2[...]         the ``cid`` lookup values (first two bytes of Community IDs), unique
      names      the files' names, "\n"-joined (UTF-8), sorted

The summary only says "none of these files can match": a key in the set is a lookup to make (a
false positive costs the files' index lookups, never a wrong answer), and a file it does not
name (filed since, or without an index) is searched as before. Exactness never depends on it: a
summary of another version, or one whose checksum fails, is not used.
"""

from __future__ import annotations

import os
import struct
import zlib
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..communityid import parse_community_id
from ..durable import atomic_write
from ..flow import Selection
from .flows import ICMP_PROTOCOLS
from .read import FlowIndex

SUMMARY_VERSION = 1
MAGIC = b"PARHOURS"
SUMMARY_SUFFIX = ".summary"
SUMMARY = struct.Struct("<8sIIQQ")
COUNTS = struct.Struct("<6I")


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
        protocols = s.protocols
        if protocols is not None and not self.protocols.intersection(protocols):
            return False
        icmp_only = protocols is not None and set(protocols) <= set(ICMP_PROTOCOLS)
        has_icmp = bool(self.protocols.intersection(ICMP_PROTOCOLS))
        if not icmp_only:  # ICMP's ports are per packet: the index holds none
            for port in (s.src_port, s.dst_port):
                if port is not None and not _has(self.ports, port):
                    return False
        for bounds in (s.src_range, s.dst_range):
            if bounds is not None and not self._has_address(*bounds):
                return False
        if s.community_id is not None and not has_icmp:
            digest = parse_community_id(s.community_id)
            if not _has(self.cids, int.from_bytes(digest[:2], "big")):
                return False
        return True

    def _has_address(self, first: bytes, last: bytes) -> bool:
        low, high = int.from_bytes(first, "big"), int.from_bytes(last, "big")
        v4_low, v4_high = (0xFFFF << 32), (0xFFFF << 32) | 0xFFFFFFFF
        if low <= v4_high and high >= v4_low and len(self.v4):
            a, b = max(low, v4_low) - v4_low, min(high, v4_high) - v4_low
            at = int(np.searchsorted(self.v4, a))
            if at < len(self.v4) and self.v4[at] <= b:
                return True
        if len(self.v6):
            keys = self.v6[:, 0].astype(object) * (1 << 64) + self.v6[:, 1].astype(object)
            at = int(np.searchsorted(keys, low))
            if at < len(keys) and keys[at] <= high:
                return True
        return False


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


def encode(summary: HourSummary) -> bytes:
    """The summary file's bytes."""
    names = "\n".join(summary.names).encode()
    bits = np.zeros(256, dtype=bool)
    bits[list(summary.protocols)] = True
    counts = COUNTS.pack(
        len(summary.names),
        len(summary.v4),
        len(summary.v6),
        len(summary.ports),
        len(summary.cids),
        len(names),
    )
    raw = b"".join(
        (
            counts,
            np.packbits(bits).tobytes(),
            summary.spans.astype("<i8").tobytes(),
            summary.v4.astype("<u4").tobytes(),
            summary.v6.astype("<u8").tobytes(),
            summary.ports.astype("<u2").tobytes(),
            summary.cids.astype("<u2").tobytes(),
            names,
        )
    )
    body = zlib.compress(raw, 6)
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
        files, n4, n6, nports, ncids, nnames = COUNTS.unpack_from(raw)
        at = COUNTS.size
        protocols = frozenset(np.flatnonzero(np.unpackbits(np.frombuffer(raw, np.uint8, 32, at))).tolist())
        at += 32
        arrays = []
        for dtype, count in (
            ("<i8", 2 * files),
            ("<u4", n4),
            ("<u8", 2 * n6),
            ("<u2", nports),
            ("<u2", ncids),
        ):
            arrays.append(np.frombuffer(raw, dtype, count, at))
            at += np.dtype(dtype).itemsize * count
        names = tuple(raw[at : at + nnames].decode().split("\n")) if files else ()
        if at + nnames != len(raw) or len(names) != files:
            raise SummaryUnusable("the summary's sections do not add up")
    except (zlib.error, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise SummaryUnusable(f"a damaged summary: {exc}") from None
    spans, v4, v6, ports, cids = arrays
    return HourSummary(names, spans.reshape(-1, 2), v4, v6.reshape(-1, 2), ports, cids, protocols)


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
