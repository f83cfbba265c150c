"""The live capture file truncated during a download, under gunicorn: the answer is cut, never a clean 200."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlencode, urlsplit

import pytest

from pcapgen import ether, tcp, write_pcap
from tests.node.captures import A_PORT, B_PORT, NS, T0, A, B, window
from tests.node.test_api_http import env_for, wait_for
from tests.servers import gunicorn

pytestmark = pytest.mark.slow

FRAME = ether(tcp(A, A_PORT, B, B_PORT, b"x" * 1400))
PACKETS = 30_000  # 43 MB: far more than the socket buffers hold while the client waits


def chunked_get(url: str, params: dict) -> socket.socket:
    """An HTTP/1.1 GET on a socket with a small receive buffer, so the server waits on us."""
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(30)
    sock.connect((parts.hostname, parts.port))
    request = (
        f"GET /data.pcap?{urlencode(params)} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


def read_to_end(sock: socket.socket, answer: bytes) -> bytes:
    while chunk := sock.recv(1 << 16):
        answer += chunk
    return answer


def test_the_live_file_truncated_mid_download_cuts_the_answer(tmp_path):
    (tmp_path / "capture").mkdir()
    (tmp_path / "filed").mkdir()
    live = tmp_path / "capture" / f"pcap.{T0}"
    write_pcap(live, ((T0 * NS + i * 1_000_000, FRAME) for i in range(PACKETS)))
    with gunicorn("node", env_for(tmp_path, tmp_path / "capture", tmp_path / "filed")) as node:
        sock = chunked_get(node.url, window(T0, T0 + 60))
        with sock:
            answer = sock.recv(1 << 16)
            assert answer.startswith(b"HTTP/1.1 200 ")
            os.truncate(live, 24 + 1000 * (16 + len(FRAME)))  # the file loses most of its records
            answer = read_to_end(sock, answer)
        assert b"Transfer-Encoding: chunked" in answer
        assert not answer.endswith(b"0\r\n\r\n"), "the answer ended as if complete"
        assert wait_for(lambda: "shrank while being read" in node.log())
        assert "the answer is cut short" in node.log()
