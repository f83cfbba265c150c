"""Flow rows written as text many at once: the same text as one at a time with ``ipaddress`` and hashlib."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address

import numpy as np

from engine.dissection.communityid import community_digest, community_digests, render, render_many
from engine.dissection.packet import V4_PREFIX
from engine.flows.text import address_texts


def _halves(packed: bytes) -> tuple[int, int]:
    return int.from_bytes(packed[:8], "big"), int.from_bytes(packed[8:], "big")


def _addresses(rng: random.Random, count: int) -> list[bytes]:
    """Addresses of every shape whose text is easy to get wrong: runs of zeros, mapped, compatible."""
    found = []
    for _ in range(count):
        kind = rng.randrange(6)
        if kind == 0:
            packed = V4_PREFIX + rng.randbytes(4)
        elif kind == 1:  # runs of zero words of every length and place
            words = [rng.choice((0, 0, 0, 1, 0xFFFF, rng.randrange(65536))) for _ in range(8)]
            packed = b"".join(w.to_bytes(2, "big") for w in words)
        elif kind == 2:  # the first 96 bits zero (::1, ::a.b.c.d compatible forms), or 80 and then not ffff
            packed = bytes(12) + (
                rng.randbytes(4) if rng.random() < 0.5 else bytes(3) + bytes([rng.randrange(4)])
            )
        elif kind == 3:
            packed = bytes(10) + rng.randbytes(2) + rng.randbytes(4)
        else:
            packed = rng.randbytes(16)
        found.append(packed)
    return found + [bytes(16), V4_PREFIX + bytes(4), bytes(15) + b"\x01", V4_PREFIX + b"\xff" * 4]


def _text(packed: bytes) -> str:
    return str(IPv4Address(packed[12:])) if packed[:12] == V4_PREFIX else str(IPv6Address(packed))


def test_addresses_are_written_as_ipaddress_writes_them_each_distinct_one_once():
    rng = random.Random(11)
    addresses = _addresses(rng, 20_000)
    addresses += addresses[:5000]  # repeated ones, in another order
    halves = np.array([_halves(a) for a in addresses], dtype=np.uint64)
    assert address_texts(halves[:, 0], halves[:, 1]) == [_text(a) for a in addresses]
    assert address_texts(np.zeros(0, np.uint64), np.zeros(0, np.uint64)) == []


def test_community_ids_of_many_flows_are_those_of_one_flow_at_a_time():
    rng = random.Random(12)
    flows = []
    for _ in range(3000):
        v4 = rng.random() < 0.5
        a, b = (V4_PREFIX + rng.randbytes(4) if v4 else rng.randbytes(16) for _ in range(2))
        if rng.random() < 0.1:
            b = a  # equal addresses: the ports decide the order
        proto = rng.choice((6, 17, 132, 47, 50))
        ports = (rng.randrange(65536), rng.randrange(65536)) if proto in (6, 17, 132) else (0, 0)
        flows.append((a, ports[0], b, ports[1], proto))
    flows.append((V4_PREFIX + b"\x0a\0\0\x01", 1, rng.randbytes(16), 2, 6))  # one end of each family
    columns = list(zip(*((*_halves(a), ap, *_halves(b), bp, p) for a, ap, b, bp, p in flows), strict=True))
    digests = community_digests(*(np.array(c, dtype=np.uint64) for c in columns))
    expected = [community_digest(*f) for f in flows]
    assert [bytes(d) for d in digests] == expected
    assert render_many(digests) == [render(d) for d in expected]
    assert render_many(np.zeros((0, 20), np.uint8)) == []
