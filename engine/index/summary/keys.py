"""An hour summary's keys and which of its files hold each: what a selection can match, file by file."""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ...dissection.communityid import parse_community_id
from ...dissection.packet import ICMP_PROTOCOLS
from ...selection.selectors import Selection
from ..opening import FlowIndex

V4_LOW, V4_HIGH = (0xFFFF << 32), (0xFFFF << 32) | 0xFFFFFFFF  # ::ffff:0.0.0.0/96 as 128-bit ints
# A summary keeps what it worked out for this many selections (a week's query asks each hour once).
PROBES_KEPT = 64


@dataclass(frozen=True, eq=False)
class HourSummary:
    """The keys of an hour's indexed files, and for each key the files that hold it.

    Keys are numbered in one sequence, class after class: ``v4``, ``v6``, ``ports``, ``cids``,
    ``protos``; the files holding key ``k`` are ``pair_files[key_starts[k]:key_starts[k + 1]]``,
    sorted (files numbered in ``names`` order). Kept compact: a process keeps a month's hours.
    """

    names: tuple[str, ...]  # sorted
    spans: np.ndarray  # int64 [files, 2]
    v4: np.ndarray  # uint32, sorted, unique
    v6: np.ndarray  # uint64 [n, 2] (high, low), sorted, unique
    ports: np.ndarray  # uint16, sorted, unique
    cids: np.ndarray  # uint16, sorted, unique
    protos: np.ndarray  # uint8, sorted, unique
    key_starts: np.ndarray  # int32 [keys + 1]
    pair_files: np.ndarray  # uint16 (int32 past 65,535 files) [pairs]
    _kept: dict = field(default_factory=dict, repr=False)

    @property
    def protocols(self) -> frozenset[int]:
        return frozenset(self.protos.tolist())

    @property
    def pair_keys(self) -> np.ndarray:
        """The key of each entry of ``pair_files``."""
        return np.repeat(np.arange(len(self.key_starts) - 1, dtype=np.int64), np.diff(self.key_starts))

    def classes(self) -> tuple[np.ndarray, ...]:
        return (self.v4, self.v6, self.ports, self.cids, self.protos)

    def span_of(self, name: str) -> tuple[int, int] | None:
        """(first_ns, last_ns) of a file it names; None for another."""
        at = _find(self.names, name)
        return None if at is None else (int(self.spans[at, 0]), int(self.spans[at, 1]))

    def may_match(self, s: Selection | Probe) -> bool:
        """False when no flow of its files can be selected by ``s`` (its window aside)."""
        return bool(self._answer(s)[1])

    def matching_names(self, s: Selection | Probe) -> frozenset[str]:
        """The files it names that may hold a flow selected by ``s`` (its window aside)."""
        return self._answer(s)[1]

    def matching(self, s: Selection | Probe) -> np.ndarray:
        """A bool per file (``names`` order): may a flow of it be selected by ``s``."""
        return self._answer(s)[0]

    def _answer(self, s: Selection | Probe) -> tuple[np.ndarray, frozenset[str]]:
        p = s if isinstance(s, Probe) else probe_of(s)
        kept = self._kept.get(p)
        if kept is None:
            if len(self._kept) >= PROBES_KEPT:
                self._kept.clear()
            mask = self._matching(p)
            kept = self._kept[p] = (mask, frozenset(self.names[i] for i in np.flatnonzero(mask).tolist()))
        return kept

    def _matching(self, p: Probe) -> np.ndarray:
        offsets = np.cumsum([0] + [len(keys) for keys in self.classes()])
        files = len(self.names)
        starts = self.key_starts

        def holding(first: int, stop: int) -> np.ndarray:
            """The files holding any key numbered in [first, stop)."""
            mask = np.zeros(files, dtype=bool)
            mask[self.pair_files[starts[first] : starts[stop]]] = True
            return mask

        def holding_value(cls: int, values: np.ndarray, value: int) -> np.ndarray:
            at = int(np.searchsorted(values, value))
            if at < len(values) and int(values[at]) == value:
                return holding(offsets[cls] + at, offsets[cls] + at + 1)
            return np.zeros(files, dtype=bool)

        mask = np.ones(files, dtype=bool)
        if p.protocols is not None:
            mask &= np.logical_or.reduce([holding_value(4, self.protos, proto) for proto in p.protocols])
        if not p.icmp_only:  # ICMP's ports are per packet: the index holds none
            for port in p.ports:
                mask &= holding_value(2, self.ports, port)
        for low, high in p.ranges:
            mask &= self._holding_addresses(low, high, offsets, holding)
        if p.cid is not None:
            icmp = np.logical_or.reduce([holding_value(4, self.protos, proto) for proto in ICMP_PROTOCOLS])
            mask &= icmp | holding_value(3, self.cids, p.cid)
        return mask

    def _holding_addresses(self, low: int, high: int, offsets, holding) -> np.ndarray:
        mask = np.zeros(len(self.names), dtype=bool)
        if low <= V4_HIGH and high >= V4_LOW and len(self.v4):
            a, b = max(low, V4_LOW) - V4_LOW, min(high, V4_HIGH) - V4_LOW
            found = np.searchsorted(self.v4, a), np.searchsorted(self.v4, b, side="right")
            mask |= holding(int(found[0]), int(found[1]))
        if len(self.v6):
            keys = self._v6_keys()
            mask |= holding(offsets[1] + bisect_left(keys, low), offsets[1] + bisect_left(keys, high + 1))
        return mask

    def _v6_keys(self) -> list[int]:
        """The IPv6 addresses as sorted 128-bit ints, made once per summary (summaries are kept)."""
        keys = self.__dict__.get("_keys6")
        if keys is None:
            keys = [hi << 64 | lo for hi, lo in self.v6.tolist()]
            object.__setattr__(self, "_keys6", keys)
        return keys


class Probe(NamedTuple):
    """What a summary checks of a selection, worked out once per selection (``probe_of``)."""

    protocols: tuple[int, ...] | None
    icmp_only: bool
    ports: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]  # each end's addresses as 128-bit ints
    cid: int | None  # the Community ID's lookup value


@functools.lru_cache(maxsize=256)
def probe_of(s: Selection) -> Probe:
    protocols = s.protocols
    cid = None
    if s.community_id is not None:
        cid = int.from_bytes(parse_community_id(s.community_id)[:2], "big")
    return Probe(
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


def _find(names: tuple[str, ...], name: str) -> int | None:
    at = bisect_left(names, name)
    return at if at < len(names) and names[at] == name else None


def no_v6() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.uint64)


def index_keys(index: FlowIndex) -> HourSummary:
    """The summary of one file's index (its name left empty)."""
    c, n4 = index.columns, index.n_v4
    v4 = np.unique(np.concatenate([c["a4"], c["b4"]]).astype(np.uint32))
    six = [np.stack([c[end + "6hi"], c[end + "6lo"]], axis=1) for end in ("a", "b")]
    v6 = np.unique(np.concatenate(six).astype(np.uint64), axis=0) if index.n_flows > n4 else no_v6()
    ports = np.unique(np.concatenate([c["aport"], c["bport"]]).astype(np.uint16))
    cids = np.unique(np.asarray(c["cid"]).astype(np.uint16))
    protos = np.unique(np.asarray(c["proto"]).astype(np.uint8))
    span = index.span or (0, -1)
    count = len(v4) + len(v6) + len(ports) + len(cids) + len(protos)
    starts = np.arange(count + 1, dtype=np.int32)
    return HourSummary(
        ("",),
        np.array([span], dtype=np.int64),
        v4,
        v6,
        ports,
        cids,
        protos,
        starts,
        compact_files(np.zeros(count), 1),
    )


def key_starts(pair_keys: np.ndarray, keys: int) -> np.ndarray:
    """``HourSummary.key_starts`` of (key, file) pairs sorted by key."""
    return np.searchsorted(pair_keys, np.arange(keys + 1)).astype(np.int32)


def compact_files(files: np.ndarray, count: int) -> np.ndarray:
    """``HourSummary.pair_files`` in the smallest type that numbers ``count`` files."""
    return files.astype(np.uint16 if count <= 1 << 16 else np.int32)


def merged(parts: Iterable[tuple[str, HourSummary]]) -> HourSummary:
    """One summary of several (each's files named by its own names, else by the name given with it)."""
    parts = list({name: part for name, part in parts}.items())
    names: list[str] = []
    spans = []
    for name, part in parts:
        for own, span in zip(part.names, part.spans, strict=True):
            names.append(own or name)
            spans.append(span)
    order = sorted(range(len(names)), key=names.__getitem__)
    if len({names[i] for i in order}) != len(names):
        raise ValueError("a file named twice")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    unions, inverses = [], []
    for cls in range(5):
        values = [part.classes()[cls] for _, part in parts]
        if cls == 1:
            joined = np.concatenate([no_v6(), *values]).astype(np.uint64)
            union, inverse = np.unique(joined, axis=0, return_inverse=True)
            union = union.reshape(-1, 2)
        else:
            dtype = (np.uint32, None, np.uint16, np.uint16, np.uint8)[cls]
            union, inverse = np.unique(
                np.concatenate([np.zeros(0, dtype), *values]).astype(dtype), return_inverse=True
            )
        unions.append(union)
        inverses.append(inverse.reshape(-1))
    offsets = np.cumsum([0] + [len(union) for union in unions])
    keys, files = [], []
    first_file, seen = 0, [0] * 5
    for _, part in parts:
        # Each key of the part, numbered in the merged sequence.
        renumber = np.concatenate(
            [
                inverses[cls][seen[cls] : seen[cls] + len(v)] + offsets[cls]
                for cls, v in enumerate(part.classes())
            ]
        )
        for cls, v in enumerate(part.classes()):
            seen[cls] += len(v)
        keys.append(renumber[part.pair_keys])
        files.append(rank[first_file + part.pair_files.astype(np.int64)])
        first_file += len(part.names)
    pair_keys = np.concatenate([np.zeros(0, np.int64), *keys]).astype(np.int64)
    pair_files = np.concatenate([np.zeros(0, np.int64), *files]).astype(np.int64)
    pairs = np.unique(np.stack([pair_keys, pair_files], axis=1), axis=0).reshape(-1, 2)
    v4, v6, ports, cids, protos = unions
    return HourSummary(
        tuple(names[i] for i in order),
        np.array([spans[i] for i in order], dtype=np.int64).reshape(-1, 2),
        v4,
        v6,
        ports,
        cids,
        protos,
        key_starts(pairs[:, 0], int(offsets[-1])),
        compact_files(pairs[:, 1], len(names)),
    )
