"""Named actors of the collector: nodes, and keys that may do more or less."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.test import Client

from collector.models import ApiKey, Node
from tests.collector.live import HungNode
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
    return Actor(*ApiKey.objects.create_key("master", admin=True))


@pytest.fixture
def node1_key(nodes) -> Actor:
    return Actor(*ApiKey.objects.create_key("analyst one", node_ids=[1]))


@pytest.fixture
def node2_key(nodes) -> Actor:
    return Actor(*ApiKey.objects.create_key("analyst two", node_ids=[2]))


@pytest.fixture
def nogrant_key(nodes) -> Actor:
    return Actor(*ApiKey.objects.create_key("nobody's"))


@pytest.fixture
def hung_node() -> Iterator[HungNode]:
    server = HungNode()
    yield server
    server.close()
