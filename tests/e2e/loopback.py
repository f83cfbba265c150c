"""Real traffic on the loopback interface, for oracle tests: TCP with data, UDP, ICMP, over IPv4 and IPv6.

``LoopbackTraffic`` runs servers on free ports, talks to them, pings, and sends one datagram to a
closed port (its ICMP port unreachable quotes the UDP flow). ``bpf()`` is a capture filter that keeps
other processes' loopback traffic out.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

ALERT_MARK = b"par-alert-me"  # a payload the test rule alerts on


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _tcp_server(family: int, host: str) -> tuple[socket.socket, int]:
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(b"reply:" + data[:2000])

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _udp_server(family: int, host: str) -> tuple[socket.socket, int]:
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))

    def serve() -> None:
        while True:
            try:
                data, peer = server.recvfrom(65536)
            except OSError:
                return
            server.sendto(b"echo:" + data, peer)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _ping(family: int, host: str, count: int) -> None:
    if family == socket.AF_INET:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        kind = 8
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        kind = 128
    with sock:
        sock.settimeout(2)
        for seq in range(count):
            body = struct.pack("!HH", 0x5041, seq) + b"par ping payload"
            header = struct.pack("!BBH", kind, 0, 0)
            checksum = _checksum(header + body) if family == socket.AF_INET else 0  # the kernel sums ICMPv6
            sock.sendto(struct.pack("!BBH", kind, 0, checksum) + body, (host, 0))
            time.sleep(0.05)


class LoopbackTraffic:
    """Servers bound first (their ports make the capture filter), then ``send()`` talks to them."""

    def __init__(self) -> None:
        self.servers: list[socket.socket] = []
        self.ends: list[tuple[int, str, int, int]] = []  # (family, host, tcp port, udp port)
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            tcp_server, tcp_port = _tcp_server(family, host)
            udp_server, udp_port = _udp_server(family, host)
            self.servers += [tcp_server, udp_server]
            self.ends.append((family, host, tcp_port, udp_port))
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.bind(("127.0.0.1", 0))
        self.closed_port = closed.getsockname()[1]
        closed.close()
        self.ports = [*(p for end in self.ends for p in end[2:]), self.closed_port]

    def bpf(self) -> str:
        return " or ".join([*(f"port {port}" for port in self.ports), "icmp", "icmp6"])

    def send(self) -> None:
        for family, host, tcp_port, udp_port in self.ends:
            for n in range(3):
                with socket.socket(family, socket.SOCK_STREAM) as client:
                    client.connect((host, tcp_port))
                    for i in range(5 + n):
                        client.sendall((ALERT_MARK if i == 2 else b"data") + bytes([i]) * (100 * i))
                        client.recv(65536)
                        time.sleep(0.1 * n)
            with socket.socket(family, socket.SOCK_DGRAM) as client:
                client.settimeout(2)
                for i in range(4):
                    client.sendto(b"udp %d" % i, (host, udp_port))
                    client.recvfrom(65536)
                    time.sleep(0.3)
            _ping(family, host, 4)
        # A datagram to a closed port: the kernel answers ICMP port unreachable, quoting it.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"anyone?", ("127.0.0.1", self.closed_port))
            time.sleep(0.2)

    def close(self) -> None:
        for server in self.servers:
            server.close()
