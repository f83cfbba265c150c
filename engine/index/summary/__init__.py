"""An hour's summary: the keys its files' indexes hold and which file holds each, so a query opens
only the indexes of the files that can match (and none in an hour that cannot).

``FILER_DIR/YYYY/MM/DD/HH/<prefix>.summary`` sits beside the hour's captures and indexes, written
by the filer after the indexes of a pass and by ``reindex`` (``node.store.refresh_summary``). It
holds every key a lookup of ``engine.index`` can start from, over the files it names, and for each
file which of those keys it holds:

    header, 32 bytes (SUMMARY): magic b"PARHOURS", version u32 (2), crc u32 (CRC-32 of the body
      as stored), body u64 (bytes stored), reserved u64
    body, zlib-compressed: counts u32[8] (files, IPv4 addresses, IPv6 addresses, ports, Community
      ID lookups, IP protocols, (key, file) pairs, prefix bytes), the files' name prefix (UTF-8),
      the IPv6 addresses as big-endian (high, low) u64 halves, sorted; then unsigned LEB128
      varints, each sorted array as its first value and the differences after it:
      epochs       [files]       the files' names' epochs (``<prefix>.<epoch>``), in order
      spans        [2 * files]   each file's records' span in whole seconds after its epoch, the
                                 first rounded down, the last up, zigzag-coded (no records: 1, 0)
      v4, ports, cids, protocols the IPv4 addresses of the flows' ends, their ports, the ``cid``
                                 lookup values (first two bytes of Community IDs), the protocols
      per file     [files]       how many keys each file holds
      keys         [pairs]       each file's keys, numbered over v4, v6, ports, cids, protocols
                                 in that order, as differences within the file's list

The sets are exact (a host or a network is matched against the addresses themselves), so a file
is opened only when it holds every key the selection needs; a Community ID is matched on its
first two bytes, as the index's own lookup is. The summary only ever says "this file cannot
match": a file it does not name (filed since, or without an index) is searched as before, and a
summary of another version, or one whose checksum fails, is not used (version 1 summaries are
searched file by file until the filer or ``reindex`` rewrites them).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...durable import atomic_write
from .codec import SUMMARY_VERSION, SummaryUnusable, decode, encode
from .keys import HourSummary, Probe, index_keys, merged, probe_of

SUMMARY_SUFFIX = ".summary"


def summary_path(directory: str | os.PathLike, prefix: str) -> Path:
    """Where the summary of the hour directory ``directory`` lives."""
    return Path(directory, prefix + SUMMARY_SUFFIX)


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
    "Probe",
    "SummaryUnusable",
    "decode",
    "encode",
    "index_keys",
    "merged",
    "probe_of",
    "read_summary",
    "summary_path",
    "write_summary",
]
