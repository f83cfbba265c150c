"""The text of many flow rows' addresses at once, as ``ipaddress`` writes them.

A 16-byte address held as two u64 halves is IPv4 text when it is IPv4-mapped (``::ffff:a.b.c.d``),
else IPv6 text compressed as RFC 5952 says (what ``str(IPv6Address)`` gives). The C library's
``inet_ntop`` writes both; it differs from ``ipaddress`` only for IPv6 addresses whose first 96
bits are zero (it writes ``::1.2.3.4`` where ``ipaddress`` writes ``::102:304``), which are left
to ``ipaddress``. Each distinct address is written once.
"""

from __future__ import annotations

import socket
from ipaddress import IPv6Address

import numpy as np

V4_MAPPED = np.uint64(0xFFFF)


def address_texts(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """The text of each address (``hi``, ``lo``: the big-endian halves of 16-byte addresses)."""
    hi, lo = np.asarray(hi, dtype=np.uint64), np.asarray(lo, dtype=np.uint64)
    if not len(hi):
        return []
    order = np.lexsort((lo, hi))
    s_hi, s_lo = hi[order], lo[order]
    new = np.empty(len(order), dtype=bool)
    new[0] = True
    new[1:] = (s_hi[1:] != s_hi[:-1]) | (s_lo[1:] != s_lo[:-1])
    u_hi, u_lo = s_hi[new], s_lo[new]
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    packed = np.empty((len(u_hi), 2), dtype=">u8")
    packed[:, 0], packed[:, 1] = u_hi, u_lo
    raw = packed.tobytes()
    mapped = (u_hi == 0) & (u_lo >> np.uint64(32) == V4_MAPPED)
    zero_prefix = (u_hi == 0) & (u_lo >> np.uint64(32) == 0)
    kinds = np.where(mapped, 1, np.where(zero_prefix, 2, 0)).tolist()
    ntop = socket.inet_ntop
    texts = []
    for k, kind in enumerate(kinds):
        at = 16 * k
        if kind == 1:
            texts.append(ntop(socket.AF_INET, raw[at + 12 : at + 16]))
        elif kind == 0:
            texts.append(ntop(socket.AF_INET6, raw[at : at + 16]))
        else:
            texts.append(str(IPv6Address(raw[at : at + 16])))
    return [texts[i] for i in inverse.tolist()]
