"""ICMP and ICMPv6 flows by message, kept in the index (version 4): ``/flows`` reads no record of them.

The flow table holds one row per pair of hosts for ICMP and ICMPv6 (ports 0): Community ID, and
``/flows``, split them by message type and code (``engine.dissection.communityid.flow_ports``). Version 3
indexes left that split to ``/flows``, which read those flows' records (a request to the archive
for an archived capture). Version 4 keeps the split rows in these columns, M rows sorted by the
flow-table row they split (then by their first time):

    icmpflow  u4[M]    the flow-table row (ICMP or ICMPv6) the message flow belongs to
    icmpbits  u1[M]    1 = the message flow's src is that row's b end (else its a end);
                       2 = its dst sent its first message (``b_first`` of a /flows row)
    icmpsprt  u2[M]    its ports: type and code as Community ID maps them (src, dst)
    icmpdprt  u2[M]
    icmpfrst  u8[M]    its first and last message time, ns since the epoch
    icmplast  u8[M]
    icmppkts  u8[M]    its messages, and their original lengths summed
    icmpbyts  u8[M]
    icmpcid   u1[20*M] its Community ID v1 (seed 0) sha1 digest, from its first sender's side

The rows are exactly what ``engine.flows.listing`` builds from the records of a capture whose index
has no ICMP columns (an older version): both run ``message_flows``, here once at build time over
the ICMP records the build has mapped anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..dissection.communityid import DIGEST_SIZE, community_digest, flow_ports
from ..dissection.packet import PROTO_ICMP, PROTO_ICMPV6

COLUMNS = (
    "icmpflow",
    "icmpbits",
    "icmpsprt",
    "icmpdprt",
    "icmpfrst",
    "icmplast",
    "icmppkts",
    "icmpbyts",
    "icmpcid",
)
SRC_IS_B, DST_FIRST = 1, 2
V4_LOW = 0xFFFF << 32  # an IPv4 address's low half, ::ffff:a.b.c.d


def message_flows(records: Iterable[tuple[int, int, int, bytes]]) -> dict[tuple, list]:
    """ICMP message flows of ``records`` (linktype, ts_ns, orig_len, frame bytes), in record order:
    (src, sport, dst, dport, proto) -> [first, last, packets, bytes, digest, sender] (addresses of
    16 bytes, folded as Community ID folds them unless one-way; ``sender``: who sent the first)."""
    from ..dissection import packet as d
    from ..selection.match import icmp_type_code

    found: dict[tuple, list] = {}
    for linktype, ts_ns, orig_len, data in records:
        f = d.dissect(linktype, data)
        if f is None or f.later_fragment or f.proto not in (PROTO_ICMP, PROTO_ICMPV6):
            continue  # a later fragment of an ICMP message: no type to file it by
        message = icmp_type_code(linktype, data)
        if message is None:
            continue
        sport, dport, one_way = flow_ports(f.proto, *message)
        src, dst = f.src, f.dst
        if not one_way and (dst < src or (dst == src and dport < sport)):
            src, sport, dst, dport = dst, dport, src, sport
        key = (src, sport, dst, dport, f.proto)
        entry = found.get(key)
        if entry is None:
            digest = community_digest(f.src, message[0], f.dst, message[1], f.proto)
            found[key] = [ts_ns, ts_ns, 1, orig_len, digest, f.src]
        else:
            entry[0], entry[1] = min(entry[0], ts_ns), max(entry[1], ts_ns)
            entry[2] += 1
            entry[3] += orig_len
    return found


def _halves(address: bytes) -> tuple[int, int]:
    return int.from_bytes(address[:8], "big"), int.from_bytes(address[8:], "big")


def message_columns(
    found: dict[tuple, list], table: dict[str, np.ndarray], n_v4: int
) -> dict[str, np.ndarray]:
    """The ICMP columns (``COLUMNS``) of the message flows ``found``, each tied to its row of the flow
    table ``table`` (the build's columns; ``n_v4`` IPv4 rows first). A message flow whose host pair
    has no ICMP row there is left out (it is in no ICMP flow the index lists)."""
    proto = table["proto"]
    rows: dict[tuple, int] = {}
    for i in np.flatnonzero((proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)).tolist():
        ends: tuple[int, ...]
        if i < n_v4:
            ends = (0, int(table["a4"][i]) | V4_LOW, 0, int(table["b4"][i]) | V4_LOW)
        else:
            j = i - n_v4
            ends = tuple(int(table[name][j]) for name in ("a6hi", "a6lo", "b6hi", "b6lo"))
        rows[(*ends, int(proto[i]))] = i
    out = []
    for (src, sport, dst, dport, p), (first, last, packets, size, digest, sender) in found.items():
        s, t = _halves(src), _halves(dst)
        src_is_b = s > t  # the table folds the pair with the lower address as a
        a, b = (t, s) if src_is_b else (s, t)
        row = rows.get((*a, *b, p))
        if row is None:
            continue
        bits = (SRC_IS_B if src_is_b else 0) | (DST_FIRST if sender != src else 0)
        out.append((row, first, bits, sport, dport, last, packets, size, digest))
    out.sort(key=lambda item: item[:2])
    m = len(out)
    columns = {
        "icmpflow": np.array([o[0] for o in out], dtype="<u4"),
        "icmpbits": np.array([o[2] for o in out], dtype="<u1"),
        "icmpsprt": np.array([o[3] for o in out], dtype="<u2"),
        "icmpdprt": np.array([o[4] for o in out], dtype="<u2"),
        "icmpfrst": np.array([o[1] for o in out], dtype="<u8"),
        "icmplast": np.array([o[5] for o in out], dtype="<u8"),
        "icmppkts": np.array([o[6] for o in out], dtype="<u8"),
        "icmpbyts": np.array([o[7] for o in out], dtype="<u8"),
        "icmpcid": np.frombuffer(b"".join(o[8] for o in out), dtype="<u1").copy(),
    }
    assert len(columns["icmpcid"]) == DIGEST_SIZE * m
    return columns


def expected_lengths(columns: dict[str, np.ndarray]) -> dict[str, int] | None:
    """The lengths the ICMP columns of an index must have (from ``icmpflow``'s); None without them."""
    if "icmpflow" not in columns:
        return None
    m = len(columns["icmpflow"])
    return {name: DIGEST_SIZE * m if name == "icmpcid" else m for name in COLUMNS}
