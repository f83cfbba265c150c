"""A fake node for export tests: answers /data.pcap with a given capture, at a pace the test sets."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.collector.live import _SocketNode

PIECE = 4096


class PcapNode(_SocketNode):
    """HEAD: 200 with the estimate headers; GET: ``body`` chunked, in pieces ``delay`` seconds apart.

    ``paused`` (an Event, set by the test) holds the answer after its first piece until it is cleared.
    """

    def __init__(self, body: bytes, *, delay: float = 0.0) -> None:
        self.body = body
        self.delay = delay
        self.requests: list[str] = []
        self.paused = threading.Event()
        self.stopped = threading.Event()
        super().__init__()

    def _answer(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.requests.append(line)
            reply = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\nConnection: close\r\n"
                f"X-PAR-Estimate-Packets: 10\r\nX-PAR-Estimate-Bytes: {len(self.body)}\r\n"
            )
            if line.startswith("HEAD "):
                conn.sendall(f"{reply}Content-Length: {len(self.body)}\r\n\r\n".encode())
                return
            conn.sendall(f"{reply}Transfer-Encoding: chunked\r\n\r\n".encode())
            for start in range(0, len(self.body), PIECE):
                piece = self.body[start : start + PIECE]
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                while self.paused.is_set() and not self._stop.is_set():
                    self._stop.wait(0.02)
                if self.delay:
                    self._stop.wait(self.delay)
            conn.sendall(b"0\r\n\r\n")
