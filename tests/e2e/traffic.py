"""Known flows sent between the two test hosts: TCP and UDP, IPv4 and IPv6."""

from __future__ import annotations

from dataclasses import dataclass

from tests.e2e.netns import A4, A6, B4, B6


@dataclass(frozen=True)
class Flow:
    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    payloads: tuple[bytes, ...]


TCP_PORT, UDP_PORT = 8080, 5353

FLOWS = (
    Flow("tcp", A4, 40001, B4, TCP_PORT, tuple(b"tcp4-%03d " % i * 20 for i in range(20))),
    Flow("udp", A4, 40002, B4, UDP_PORT, tuple(b"udp4-%03d" % i for i in range(15))),
    Flow("tcp", A6, 40003, B6, TCP_PORT, tuple(b"tcp6-%03d " % i * 30 for i in range(20))),
    Flow("udp", A6, 40004, B6, UDP_PORT, tuple(b"udp6-%03d" % i for i in range(15))),
)
# Traffic that shares hosts and a port with the flows above but is not one of them.
NOISE = Flow("udp", A4, 40005, B4, UDP_PORT, tuple(b"noise-%03d" % i for i in range(10)))

SERVER = f"""
import socket, threading

def tcp_echo(family, addr):
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, {TCP_PORT}))
    srv.listen()
    while True:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

def udp_echo(family, addr):
    srv = socket.socket(family, socket.SOCK_DGRAM)
    srv.bind((addr, {UDP_PORT}))
    while True:
        data, peer = srv.recvfrom(65536)
        srv.sendto(data, peer)

threads = [
    threading.Thread(target=tcp_echo, args=(socket.AF_INET, "{B4}"), daemon=True),
    threading.Thread(target=tcp_echo, args=(socket.AF_INET6, "{B6}"), daemon=True),
    threading.Thread(target=udp_echo, args=(socket.AF_INET, "{B4}"), daemon=True),
    threading.Thread(target=udp_echo, args=(socket.AF_INET6, "{B6}"), daemon=True),
]
for t in threads:
    t.start()
print("ready", flush=True)
threads[0].join()
"""


def client_code(flows: tuple[Flow, ...]) -> str:
    """Python run on host A: send every flow's payloads and wait for the echoes."""
    spec = [(f.proto, f.src, f.sport, f.dst, f.dport, list(f.payloads)) for f in flows]
    return f"""
import socket, time
for proto, src, sport, dst, dport, payloads in {spec!r}:
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.settimeout(5)
    sock.bind((src, sport))
    sock.connect((dst, dport))
    for payload in payloads:
        sock.send(payload)
        got = b""
        while len(got) < len(payload):
            got += sock.recv(65536)
        assert got == payload, (got, payload)
        time.sleep(0.01)
    sock.close()
    time.sleep(0.2)
print("sent", flush=True)
"""
