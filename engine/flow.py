"""What a query asks for: one flow, both directions, in a time window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address

# The latest second a query or a capture file name may name: a time is shown as a datetime in UTC and
# in local time (file names, hour directories, the request log), and datetime stops at the end of the
# year 9999 in every zone.
LATEST_EPOCH = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp())

PROTO_TCP = 6
PROTO_UDP = 17
PROTO_SCTP = 132
# Protocols whose packets carry ports, matched when a query names no protocol.
PORT_PROTOCOLS = (PROTO_TCP, PROTO_UDP, PROTO_SCTP)
PROTO_NAMES = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "sctp": PROTO_SCTP}


@dataclass(frozen=True, slots=True)
class FlowQuery:
    """A flow ``a:a_port <-> b:b_port`` in ``[start_ns, end_ns]`` (inclusive, epoch ns)."""

    a: IPAddress
    a_port: int
    b: IPAddress
    b_port: int
    start_ns: int
    end_ns: int
    proto: int | None = None  # IP protocol number; None = TCP, UDP or SCTP
