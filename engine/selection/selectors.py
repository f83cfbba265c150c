"""What a query asks for: the flows a selection names, both directions, in a time window.

A ``Selection`` holds every selector of docs/SPEC.md "Selecting packets", each optional: an address or
network per end, a port per end, an IP protocol, a Community ID. ``src_*`` and ``dst_*`` are the
two ends of a flow in either order ("Direction"): a flow matches when one end satisfies every
``src_*`` given and the other end every ``dst_*`` given. With no protocol given, a port selects
TCP, UDP or SCTP; without a port either, any protocol. The engine compares addresses as 16 bytes
(IPv4 as ``::ffff:a.b.c.d``), so a network is an inclusive range of those (``address_range``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from ..dissection.packet import (
    PORT_PROTOCOLS,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    V4_PREFIX,
)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# The latest second a query or a capture file name may name: a time is shown as a datetime in UTC and
# in local time (file names, hour directories, the request log), and datetime stops at the end of the
# year 9999 in every zone.
LATEST_EPOCH = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp())

PROTO_NAMES = {
    "tcp": PROTO_TCP,
    "udp": PROTO_UDP,
    "sctp": PROTO_SCTP,
    "icmp": PROTO_ICMP,
    "icmp6": PROTO_ICMPV6,
}
_ALL_ONES = b"\xff" * 16


def address16(address: IPAddress) -> bytes:
    """An address as the 16 bytes the engine compares (IPv4 as ``::ffff:a.b.c.d``)."""
    if address.version == 4:
        return V4_PREFIX + address.packed
    return address.packed


def address_range(network: IPNetwork) -> tuple[bytes, bytes]:
    """The first and last address of ``network`` as 16 bytes each (inclusive; IPv4 mapped)."""
    first = address16(network.network_address)
    last = address16(network.broadcast_address)
    return first, last


def as_network(value: IPAddress | IPNetwork | str) -> IPNetwork:
    """A network from an address (a /32 or /128), a network, or their text."""
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    return ip_network(value, strict=False) if isinstance(value, str) else ip_network(value)


@dataclass(frozen=True)
class Selection:
    """The flows asked for, and the window ``[start_ns, end_ns]`` (inclusive, epoch ns); None = any."""

    start_ns: int
    end_ns: int
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    src_port: int | None = None
    dst_port: int | None = None
    proto: int | None = None  # IP protocol number (after IPv6 extension headers)
    community_id: str | None = None  # "1:<base64>", Community ID v1 seed 0
    _ranges: tuple = field(init=False, repr=False, compare=False, hash=False)
    _hash: int = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("src", "dst"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, IPv4Network | IPv6Network):
                object.__setattr__(self, name, as_network(value))
        ranges = tuple(None if n is None else address_range(n) for n in (self.src, self.dst))
        object.__setattr__(self, "_ranges", ranges)
        # Hashed once: an open index keeps its answers by selection (FlowIndex.selected).
        fields = (self.start_ns, self.end_ns, ranges, self.src_port, self.dst_port, self.proto)
        object.__setattr__(self, "_hash", hash((*fields, self.community_id)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def protocols(self) -> tuple[int, ...] | None:
        """The IP protocols a flow may have: None = any."""
        if self.proto is not None:
            return (self.proto,)
        if self.src_port is not None or self.dst_port is not None:
            return PORT_PROTOCOLS
        return None

    @property
    def src_range(self) -> tuple[bytes, bytes] | None:
        """``src`` as an inclusive range of 16-byte addresses; None = any address."""
        return self._ranges[0]

    @property
    def dst_range(self) -> tuple[bytes, bytes] | None:
        """``dst`` as an inclusive range of 16-byte addresses; None = any address."""
        return self._ranges[1]

    @property
    def exact_flow(self) -> bool:
        """True for the seed's question: both addresses single hosts and both ports given."""
        return (
            self.src is not None
            and self.dst is not None
            and self.src.num_addresses == 1
            and self.dst.num_addresses == 1
            and self.src_port is not None
            and self.dst_port is not None
        )

    @property
    def any_flow(self) -> bool:
        """True when no selector is given: every packet in the window."""
        return (self.src, self.dst, self.src_port, self.dst_port, self.proto, self.community_id) == (
            None,
        ) * 6

    def end_matches(self, which: int, address: bytes, port: int) -> bool:
        """True when an end (16-byte address, port) satisfies the ``src_*`` (0) or ``dst_*`` (1) selectors."""
        bounds = self._ranges[which]
        if bounds is not None and not bounds[0] <= address <= bounds[1]:
            return False
        wanted = self.src_port if which == 0 else self.dst_port
        return wanted is None or wanted == port

    def endpoints_match(self, a: bytes, b: bytes) -> bool:
        """True when addresses ``a`` and ``b`` can be the two ends asked for, either way (ports unknown)."""
        ranges = self._ranges
        return (_inside(a, ranges[0]) and _inside(b, ranges[1])) or (
            _inside(b, ranges[0]) and _inside(a, ranges[1])
        )

    def matches(self, a: bytes, a_port: int, b: bytes, b_port: int, proto: int) -> bool:
        """True when the flow (a, a_port) <-> (b, b_port) of ``proto`` matches, Community ID aside.

        Addresses are 16 bytes (``address16``). The Community ID, when asked for, is a property of
        the flow's fields the caller computes (``engine.dissection.communityid``) and compares with ``community_id``.
        """
        protocols = self.protocols
        if protocols is not None and proto not in protocols:
            return False
        end = self.end_matches
        return (end(0, a, a_port) and end(1, b, b_port)) or (end(0, b, b_port) and end(1, a, a_port))


def _inside(address: bytes, bounds: tuple[bytes, bytes] | None) -> bool:
    return bounds is None or bounds[0] <= address <= bounds[1]


class FlowQuery(Selection):
    """The seed's question: the flow ``a:a_port <-> b:b_port``, both directions, in the window.

    A Selection with both addresses single hosts and both ports given; ``a``/``b`` read back as
    addresses. ``proto`` None = TCP, UDP or SCTP.
    """

    def __init__(
        self,
        a: IPAddress,
        a_port: int,
        b: IPAddress,
        b_port: int,
        start_ns: int,
        end_ns: int,
        proto: int | None = None,
    ) -> None:
        super().__init__(
            start_ns=start_ns,
            end_ns=end_ns,
            src=as_network(a),
            dst=as_network(b),
            src_port=a_port,
            dst_port=b_port,
            proto=proto,
        )

    @property
    def a(self) -> IPAddress:
        assert self.src is not None
        return self.src.network_address

    @property
    def b(self) -> IPAddress:
        assert self.dst is not None
        return self.dst.network_address

    @property
    def a_port(self) -> int:
        assert self.src_port is not None
        return self.src_port

    @property
    def b_port(self) -> int:
        assert self.dst_port is not None
        return self.dst_port

    def __repr__(self) -> str:
        return (
            f"FlowQuery({self.a}:{self.a_port} <-> {self.b}:{self.b_port}, proto={self.proto},"
            f" [{self.start_ns}, {self.end_ns}])"
        )
