"""gunicorn's threaded worker, with request heads read by the event loop before a thread is given.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its first byte arrives; the
thread then blocks until the head is complete. Forty sockets that send half a head (from any
address: the node's ACL runs only once the head is read) hold forty threads for as long as they
like, and allowed callers wait. Here the loop reads what a connection sends without blocking,
keeps it, and submits the connection only when its head is complete (or too long: the parser then
refuses it); a head not complete within ``PAR_HEADER_TIMEOUT`` seconds of its first byte is
closed. The bytes kept are handed to gunicorn's parser, which reads them before the socket.
A request body is still read by its thread (the API has none; the admin's forms are small).

A large chunk of a chunked answer (a download's megabytes) is sent with one ``sendmsg`` of its
size line, its bytes and its end, instead of gunicorn's copy of the three joined: the bytes are
not copied once more on their way to the socket.
"""

from __future__ import annotations

import errno
import os
import selectors
import time
from functools import partial

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_END = b"\r\n\r\n"
GATHER_FROM = 1 << 16  # chunks this long are sent without being joined to their framing
_write_chunk_joined = util.write_chunk
HEAD_MAX = 64 * 1024  # past this the parser answers 400 (request line / header limits)


def write_chunk(sock, data) -> None:
    """One chunk of a chunked answer; a long one sent as three buffers, none of them copied."""
    if len(data) < GATHER_FROM or isinstance(data, str) or not hasattr(sock, "sendmsg") or _is_tls(sock):
        _write_chunk_joined(sock, data)
        return
    parts: list = [b"%X\r\n" % len(data), memoryview(data), b"\r\n"]
    while parts:
        sent = sock.sendmsg(parts)
        while parts and sent >= len(parts[0]):
            sent -= len(parts.pop(0))
        if sent:
            parts[0] = parts[0][sent:]


def _is_tls(sock) -> bool:
    import ssl

    return isinstance(sock, ssl.SSLSocket)


def header_timeout() -> float:
    return float(os.environ.get("PAR_HEADER_TIMEOUT", "") or 10)


class HeadFirstThreadWorker(ThreadWorker):
    """``gthread`` whose threads only ever see connections with a complete request head."""

    def init_process(self) -> None:
        self.heads: dict[TConn, tuple[bytes, float]] = {}  # conn -> (bytes so far, deadline)
        self.head_timeout = header_timeout()
        util.write_chunk = write_chunk
        super().init_process()

    def on_client_socket_readable(self, conn, client) -> None:
        with self._lock:
            self.poller.unregister(client)
            if conn.initialized and conn not in self.heads:
                try:
                    self._keep.remove(conn)  # a kept-alive connection starts its next request
                except ValueError:
                    return  # raced with the keepalive sweep, which closed it
        if self.cfg.is_ssl:
            self.heads.pop(conn, None)
            self.enqueue_req(conn)
            return
        head, deadline = self.heads.pop(conn, (b"", time.monotonic() + self.head_timeout))
        try:
            data = conn.sock.recv(HEAD_MAX)
        except BlockingIOError:
            data = None
        except OSError:
            self._drop(conn)
            return
        if data == b"":
            self._drop(conn)  # the client went away (or finished a kept-alive connection)
            return
        head += data or b""
        if HEAD_END in head or len(head) >= HEAD_MAX:
            self._submit(conn, head)
            return
        self.heads[conn] = (head, deadline)
        with self._lock:
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
            )

    def _submit(self, conn, head: bytes) -> None:
        """Give the connection to a thread, its parser first reading the bytes already received."""
        conn.init()
        conn.parser.unreader.unread(head)
        fs = self.tpool.submit(self.handle, conn)
        self._wrap_future(fs, conn)

    def _drop(self, conn) -> None:
        self.heads.pop(conn, None)
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self) -> None:
        super().murder_keepalived()
        now = time.monotonic()
        for conn, (_, deadline) in list(self.heads.items()):
            if deadline > now:
                continue
            with self._lock:
                try:
                    self.poller.unregister(conn.sock)
                except (KeyError, ValueError):
                    pass
                except OSError as exc:
                    if exc.errno != errno.EBADF:
                        raise
            self.log.info(
                "closed a connection from %s: no complete request head in %.0f s",
                conn.client[0] if conn.client else "?",
                self.head_timeout,
            )
            self._drop(conn)
