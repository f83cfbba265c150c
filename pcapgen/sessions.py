"""Real conversations for the demo: TCP sessions (handshake, data, teardown), HTTP, DNS over UDP, TLS.

Sequence and acknowledgement numbers add up and every segment is acknowledged once, so Wireshark
shows the sessions as it would a clean capture: no retransmission, no duplicate ACK, no lost
segment (tests/pcapgen/test_sessions.py asks tshark)::

    tcp_session(client, cport, server, sport, exchanges, start_ns, rtt_ns, vlans=()) -> [(ts_ns, frame)]
        exchanges: [(request bytes, response bytes), ...], one after the other on one connection
    http_exchange(host, path, body) -> (request, response)       # HTTP/1.1 with a right Content-Length
    tls_exchange(server_name, sizes, rng) -> [(client bytes, server bytes), ...]  # hello, then records
    dns_exchange(client, cport, server, name, answer, start_ns, rtt_ns, ident, vlans=())
    session_traffic(start_ns, seconds, seed=0) -> (records in time order, [SessionFlow])
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pcapgen import Flow, ether, tcp, udp

MSS = 1448
WINDOW = 64240
BURST = 20  # segments a sender sends before it waits for their ACKs (29 KB, inside WINDOW)
HTTP_PORT, TLS_PORT, DNS_PORT = 80, 443, 53


@dataclass(frozen=True)
class SessionFlow(Flow):
    """A generated conversation: its flow and what it is (``http``, ``tls`` or ``dns``)."""

    kind: str = ""
    packets: int = 0


def _frames(packets: list[tuple[int, bytes]], vlans) -> list[tuple[int, bytes]]:
    return [(ts, ether(packet, vlans=vlans)) for ts, packet in packets]


def tcp_session(
    client: str,
    cport: int,
    server: str,
    sport: int,
    exchanges: Sequence[tuple[bytes, bytes]],
    start_ns: int,
    rtt_ns: int,
    *,
    vlans: Sequence = (),
    isn: tuple[int, int] = (1000, 5000),
) -> list[tuple[int, bytes]]:
    """One TCP connection: three-way handshake, each (request, response) in MSS segments, FIN teardown.

    A sender sends at most BURST segments (well inside the receiver's window) and waits a round
    trip for their ACKs before the next ones; the receiver acknowledges every second segment and
    the last of a burst, half a round trip after it was sent.
    """
    half = max(rtt_ns // 2, 50_000)
    gap = 12_000  # between back-to-back segments of one burst (12 us, about 1 Gbit/s)
    seq = {"c": isn[0], "s": isn[1]}
    out: list[tuple[int, bytes]] = []

    def send(at: int, side: str, flags: str, payload: bytes = b"") -> None:
        src, sp, dst, dp = (client, cport, server, sport) if side == "c" else (server, sport, client, cport)
        other = "s" if side == "c" else "c"
        ack = seq[other] if "A" in flags else 0
        out.append((at, tcp(src, sp, dst, dp, payload, seq=seq[side], flags=flags, ack=ack, window=WINDOW)))
        seq[side] += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    t = start_ns
    send(t, "c", "S")
    send(t + half, "s", "SA")
    t += 2 * half
    send(t, "c", "A")
    for request, response in exchanges:
        for side, data in (("c", request), ("s", response)):
            other = "s" if side == "c" else "c"
            segments = [data[i : i + MSS] for i in range(0, len(data), MSS)]
            for first in range(0, len(segments), BURST):
                burst = segments[first : first + BURST]
                for n, segment in enumerate(burst):
                    at = t + (n + 1) * gap
                    last = first + n == len(segments) - 1
                    send(at, side, "PA" if last else "A", segment)
                    if n % 2 == 1 or n == len(burst) - 1:
                        send(at + half, other, "A")
                t = t + len(burst) * gap + 2 * half  # the burst's last ACK is back at the sender
    send(t, "c", "FA")
    send(t + half, "s", "FA")
    send(t + 2 * half, "c", "A")
    return _frames(sorted(out, key=lambda r: r[0]), vlans)


def http_exchange(host: str, path: str, body: bytes) -> tuple[bytes, bytes]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
    ).encode()
    response = (
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    return request, response


def _record(kind: int, body: bytes) -> bytes:
    return struct.pack("!BHH", kind, 0x0303, len(body)) + body


def _handshake(kind: int, body: bytes) -> bytes:
    return struct.pack("!B", kind) + len(body).to_bytes(3, "big") + body


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(server_name: str, rng: random.Random) -> bytes:
    """A TLS 1.3 ClientHello record (SNI, supported versions, an X25519 key share)."""
    name = server_name.encode()
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    extensions = (
        _extension(0x0000, sni)
        + _extension(0x000A, struct.pack("!HH", 2, 0x001D))  # supported groups: x25519
        + _extension(0x000D, struct.pack("!HHH", 4, 0x0403, 0x0804))  # signature algorithms
        + _extension(0x002B, struct.pack("!BHH", 4, 0x0304, 0x0303))  # supported versions
        + _extension(0x0033, struct.pack("!HHH", 36, 0x001D, 32) + rng.randbytes(32))  # key share
    )
    ciphers = struct.pack("!HHHH", 6, 0x1301, 0x1302, 0x1303)
    body = struct.pack("!H", 0x0303) + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + ciphers
    body += b"\x01\x00" + struct.pack("!H", len(extensions)) + extensions
    # The record layer of a first ClientHello says TLS 1.0, as browsers send it.
    handshake = _handshake(1, body)
    return struct.pack("!BHH", 22, 0x0301, len(handshake)) + handshake


def server_hello(session_id: bytes, rng: random.Random) -> bytes:
    extensions = _extension(0x002B, struct.pack("!H", 0x0304)) + _extension(
        0x0033, struct.pack("!HH", 0x001D, 32) + rng.randbytes(32)
    )
    body = struct.pack("!H", 0x0303) + rng.randbytes(32) + bytes([len(session_id)]) + session_id
    body += struct.pack("!HB", 0x1301, 0) + struct.pack("!H", len(extensions)) + extensions
    return _record(22, _handshake(2, body))


def _application_data(size: int, rng: random.Random) -> bytes:
    """``size`` bytes of opaque TLS application data records (at most 16 KiB + tag each)."""
    out = b""
    while size > 0:
        n = min(size, 16384 + 256)
        out += _record(23, rng.randbytes(n))
        size -= n
    return out


def tls_exchange(
    server_name: str, sizes: Sequence[tuple[int, int]], rng: random.Random
) -> list[tuple[bytes, bytes]]:
    """A TLS 1.3 conversation: hellos, then (request, response) sizes as application data."""
    hello = client_hello(server_name, rng)
    session_id = hello[5 + 4 + 2 + 32 + 1 : 5 + 4 + 2 + 32 + 1 + 32]
    flight = server_hello(session_id, rng) + _record(20, b"\x01") + _application_data(2800, rng)
    exchanges = [(hello, flight)]
    finished = _record(20, b"\x01") + _application_data(53, rng)
    for n, (up, down) in enumerate(sizes):
        request = (finished if n == 0 else b"") + _application_data(up, rng)
        exchanges.append((request, _application_data(down, rng)))
    return exchanges


def _dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"


def dns_exchange(
    client: str,
    cport: int,
    server: str,
    name: str,
    answer: str,
    start_ns: int,
    rtt_ns: int,
    ident: int,
    *,
    vlans: Sequence = (),
) -> list[tuple[int, bytes]]:
    """A DNS query for ``name`` (A or AAAA, by ``answer``'s family) over UDP, and its answer."""
    address = ipaddress.ip_address(answer)
    qtype = 1 if address.version == 4 else 28
    question = _dns_name(name) + struct.pack("!HH", qtype, 1)
    query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
    record = struct.pack("!HHHIH", 0xC00C, qtype, 1, 300, len(address.packed)) + address.packed
    reply = struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + record
    packets = [
        (start_ns, udp(client, cport, server, DNS_PORT, query)),
        (start_ns + rtt_ns, udp(server, DNS_PORT, client, cport, reply)),
    ]
    return _frames(packets, vlans)


_SITES = (
    "www.example.org",
    "intranet.example.com",
    "updates.example.net",
    "cdn.example.org",
    "mail.example.com",
)


def session_traffic(
    start_ns: int, seconds: int, seed: int = 0
) -> tuple[list[tuple[int, bytes]], list[SessionFlow]]:
    """``seconds`` of a small office's traffic: DNS lookups, then HTTP or TLS sessions to the answer.

    Clients in 10.77.0.0/16 and fd00:77::/64 (some behind VLAN 100), servers in 192.0.2.0/24
    and 2001:db8::/64, a resolver at 10.77.0.53 / fd00:77::53. Returns the frames in time order
    and the conversations, the busiest first.
    """
    rng = random.Random(seed)
    records: list[tuple[int, bytes]] = []
    flows: list[SessionFlow] = []
    used_ports: set[tuple[str, int]] = set()
    end_ns = start_ns + seconds * 10**9
    t = start_ns
    while t < end_ns - 5 * 10**9:
        v6 = rng.random() < 0.3
        vlans = (100,) if rng.random() < 0.2 else ()
        if v6:
            client = f"fd00:77::{rng.randrange(0x10, 0xFFFF):x}"
            resolver, server = "fd00:77::53", f"2001:db8::{rng.randrange(1, 250):x}"
        else:
            client = f"10.77.{rng.randrange(1, 250)}.{rng.randrange(2, 250)}"
            resolver, server = "10.77.0.53", f"192.0.2.{rng.randrange(1, 250)}"
        cport = rng.randrange(32768, 61000)
        while (client, cport) in used_ports:
            cport = rng.randrange(32768, 61000)
        used_ports.add((client, cport))
        site = rng.choice(_SITES)
        rtt = rng.randrange(2, 60) * 1_000_000
        lookup = dns_exchange(
            client,
            cport + 1,
            resolver,
            site,
            server,
            t,
            rng.randrange(1, 20) * 1_000_000,
            rng.randrange(65536),
            vlans=vlans,
        )
        records += lookup
        flows.append(SessionFlow(17, client, cport + 1, resolver, DNS_PORT, vlans, kind="dns", packets=2))
        used_ports.add((client, cport + 1))
        begin = t + 30_000_000
        if rng.random() < 0.6:
            pages = [
                http_exchange(
                    site,
                    f"/{rng.choice(('', 'index.html', 'news', 'img/logo.png'))}",
                    rng.randbytes(rng.choice((600, 4000, 20000, 60000))),
                )
                for _ in range(rng.randrange(1, 4))
            ]
            session = tcp_session(
                client,
                cport,
                server,
                HTTP_PORT,
                pages,
                begin,
                rtt,
                vlans=vlans,
                isn=(rng.randrange(2**32), rng.randrange(2**32)),
            )
            kind, port = "http", HTTP_PORT
        else:
            sizes = [
                (rng.randrange(200, 900), rng.choice((1500, 20000, 120000)))
                for _ in range(rng.randrange(1, 4))
            ]
            session = tcp_session(
                client,
                cport,
                server,
                TLS_PORT,
                tls_exchange(site, sizes, rng),
                begin,
                rtt,
                vlans=vlans,
                isn=(rng.randrange(2**32), rng.randrange(2**32)),
            )
            kind, port = "tls", TLS_PORT
        if session[-1][0] < end_ns:
            records += session
            flows.append(SessionFlow(6, client, cport, server, port, vlans, kind=kind, packets=len(session)))
        t += rng.randrange(100, 700) * 1_000_000
    records.sort(key=lambda r: r[0])
    flows.sort(key=lambda f: -f.packets)
    return records, flows
