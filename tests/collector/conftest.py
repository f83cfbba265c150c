"""Named actors of the collector: nodes, and keys that may do more or less."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.test import Client

from collector.management.commands.createapikey import create_key
from collector.models import ApiKey, Node
from tests.servers import free_port


@dataclass
class Actor:
    """A key as its holder knows it: the row and the key itself."""

    row: ApiKey
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Api-Key {self.key}"}


class KeyClient(Client):
    """A test client that can send a key the three ways the API accepts."""

    def get_as(self, actor: Actor | None, path: str, data: dict | None = None, **kwargs):
        headers = {**(actor.headers if actor else {}), **kwargs.pop("headers", {})}
        return self.get(path, data or {}, headers=headers, **kwargs)


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()  # throttle counts live in the cache
    yield
    cache.clear()


@pytest.fixture
def api() -> KeyClient:
    return KeyClient()


@pytest.fixture
def dead_address() -> str:
    """host:port with nothing listening."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def nodes(db, dead_address) -> dict[int, Node]:
    """Node 1 and node 2, both unreachable unless a test points them somewhere."""
    return {
        1: Node.objects.create(id=1, name="sensor one", address=dead_address),
        2: Node.objects.create(id=2, name="sensor two", address=f"127.0.0.1:{free_port()}"),
    }


@pytest.fixture
def admin_key(nodes) -> Actor:
    return Actor(*create_key("master", admin=True))


@pytest.fixture
def node1_key(nodes) -> Actor:
    return Actor(*create_key("analyst one", node_ids=[1]))


@pytest.fixture
def node2_key(nodes) -> Actor:
    return Actor(*create_key("analyst two", node_ids=[2]))


@pytest.fixture
def nogrant_key(nodes) -> Actor:
    return Actor(*create_key("nobody's"))


class HungNode:
    """A server that accepts connections, reads what it is sent, and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.received = bytearray()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            self._conns.append(conn)
            with contextlib.suppress(OSError):
                self.received += conn.recv(65536)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._conns:
            conn.close()
        self.listener.close()


@pytest.fixture
def hung_node() -> Iterator[HungNode]:
    server = HungNode()
    yield server
    server.close()
