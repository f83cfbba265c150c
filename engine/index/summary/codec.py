"""An hour summary's bytes (the layout is in ``engine.index.summary``'s docstring)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..format import decode_varints
from .keys import HourSummary, compact_files, key_starts

SUMMARY_VERSION = 2
MAGIC = b"PARHOURS"
SUMMARY = struct.Struct("<8sIIQQ")
COUNTS = struct.Struct("<8I")
NS = 1_000_000_000


class SummaryUnusable(ValueError):
    """A summary of another version, damaged, or not a summary: the hour is searched file by file."""


def encode_varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128 varints of ``values`` (non-negative), concatenated."""
    v = np.asarray(values, dtype=np.uint64)
    if not len(v):
        return b""
    groups = np.empty((len(v), 10), dtype=np.uint8)
    rest = v.copy()
    for at in range(10):
        groups[:, at] = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest >>= np.uint64(7)
    lengths = np.ones(len(v), dtype=np.int64)
    for at in range(1, 10):
        lengths += v >= np.uint64(1) << np.uint64(7 * at)
    keep = np.arange(10) < lengths[:, None]
    groups[np.arange(10) < (lengths - 1)[:, None]] |= 0x80
    return groups[keep].tobytes()


def _zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _unzigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.uint64)
    return (v >> np.uint64(1)).astype(np.int64) ^ -(v & np.uint64(1)).astype(np.int64)


def _deltas(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64)
    return np.diff(v, prepend=np.int64(0)) if len(v) else v


def _name_parts(names: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """(prefix, epochs) of ``<prefix>.<epoch>`` names of one prefix; ValueError for others."""
    prefixes = {name.rpartition(".")[0] for name in names}
    if len(prefixes) > 1:
        raise ValueError("names of several prefixes")
    return (prefixes.pop() if prefixes else ""), np.array(
        [int(n.rpartition(".")[2]) for n in names], np.int64
    )


def _second_spans(epochs: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """The spans as whole seconds after each epoch (first rounded down, last up); no records: (1, 0)."""
    out = np.empty((len(epochs), 2), dtype=np.int64)
    out[:, 0] = spans[:, 0] // NS - epochs
    out[:, 1] = -(-spans[:, 1] // NS) - epochs
    out[spans[:, 0] > spans[:, 1]] = (1, 0)
    return out


def _restarted_deltas(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The differences within each run of ``values`` (runs ``counts`` long), each run's first as is."""
    deltas = np.diff(values, prepend=np.int64(0)) if len(values) else values.astype(np.int64)
    firsts = (np.cumsum(counts) - counts)[counts > 0]
    deltas[firsts] = values[firsts]
    return deltas


def _restarted_sums(deltas: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The values ``_restarted_deltas`` was given."""
    running = np.cumsum(deltas)
    firsts = (np.cumsum(counts) - counts)[counts > 0]
    base = running[firsts] - deltas[firsts]
    return running - np.repeat(base, counts[counts > 0])


def encode(summary: HourSummary) -> bytes:
    """The summary file's bytes."""
    prefix, epochs = _name_parts(summary.names)
    order = np.argsort(epochs, kind="stable")  # files in epoch order: their deltas are small
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    head = prefix.encode()
    keys, files = summary.pair_keys, position[summary.pair_files.astype(np.int64)]
    by_key = np.lexsort((files, keys))  # each key's files in epoch order
    keys, files = keys[by_key], files[by_key]
    total = sum(len(keys_of) for keys_of in summary.classes())
    per_key = np.bincount(keys, minlength=total)
    file_deltas = _restarted_deltas(files, per_key)
    v6 = summary.v6.astype(np.uint64).reshape(-1, 2)
    raw = b"".join(
        (
            COUNTS.pack(
                len(order),
                len(summary.v4),
                len(v6),
                len(summary.ports),
                len(summary.cids),
                len(summary.protos),
                len(keys),
                len(head),
            ),
            head,
            v6.astype(">u8").tobytes(),
            encode_varints(
                np.concatenate(
                    [
                        _deltas(epochs[order]).astype(np.uint64),
                        _zigzag(_second_spans(epochs[order], summary.spans[order]).reshape(-1)),
                        *(
                            _deltas(a).astype(np.uint64)
                            for a in (summary.v4, summary.ports, summary.cids, summary.protos)
                        ),
                        per_key.astype(np.uint64),
                        file_deltas.astype(np.uint64),
                    ]
                )
            ),
        )
    )
    body = zlib.compress(raw, 9)
    return SUMMARY.pack(MAGIC, SUMMARY_VERSION, zlib.crc32(body), len(body), 0) + body


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
        return _decode_body(zlib.decompress(body))
    except (zlib.error, struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise SummaryUnusable(f"a damaged summary: {exc}") from None


def _decode_body(raw: bytes) -> HourSummary:
    files, n4, n6, nports, ncids, nprotos, pairs, nprefix = COUNTS.unpack_from(raw)
    at = COUNTS.size
    prefix = raw[at : at + nprefix].decode()
    at += nprefix
    v6 = np.frombuffer(raw, ">u8", 2 * n6, at).astype(np.uint64).reshape(-1, 2)
    at += 16 * n6
    values = decode_varints(np.frombuffer(raw, np.uint8, len(raw) - at, at))
    total = n4 + n6 + nports + ncids + nprotos
    sizes = (files, 2 * files, n4, nports, ncids, nprotos, total, pairs)
    if len(values) != sum(sizes):
        raise ValueError("the summary's sections do not add up")
    cuts = np.cumsum(sizes)[:-1]
    epoch_d, second_spans, v4_d, port_d, cid_d, proto_d, per_key, file_d = np.split(values, cuts)
    epochs = np.cumsum(epoch_d.astype(np.int64))
    seconds = _unzigzag(second_spans).reshape(-1, 2)
    spans = np.stack([(epochs + seconds[:, 0]) * NS, (epochs + seconds[:, 1]) * NS], axis=1).reshape(-1, 2)
    classes = []
    for deltas, top, dtype in (
        (v4_d, 1 << 32, np.uint32),
        (port_d, 1 << 16, np.uint16),
        (cid_d, 1 << 16, np.uint16),
        (proto_d, 1 << 8, np.uint8),
    ):
        keys = np.cumsum(deltas.astype(np.int64))
        if len(keys) and (keys[-1] >= top or (len(keys) > 1 and np.any(deltas[1:] == 0))):
            raise ValueError("keys out of order")
        classes.append(keys.astype(dtype))
    v4, ports, cids, protos = classes
    per_key = per_key.astype(np.int64)
    if int(per_key.sum()) != pairs:
        raise ValueError("the keys' files do not add up")
    file_of = _restarted_sums(file_d.astype(np.int64), per_key)
    if pairs and (file_of.min() < 0 or file_of.max() >= files):
        raise ValueError("a key's file out of range")
    names = [f"{prefix}.{epoch}" for epoch in epochs.tolist()]
    order = sorted(range(files), key=names.__getitem__)
    rank = np.empty(files, dtype=np.int64)
    rank[order] = np.arange(files)
    pair_keys = np.repeat(np.arange(total, dtype=np.int64), per_key)
    by_key = np.lexsort((rank[file_of], pair_keys))
    return HourSummary(
        tuple(names[i] for i in order),
        spans[order].reshape(-1, 2),
        v4,
        v6,
        ports,
        cids,
        protos,
        key_starts(pair_keys[by_key], total),
        compact_files(rank[file_of][by_key], files),
    )
