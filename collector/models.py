"""What a collector keeps: API keys (hashed), nodes and grants; the request log and limits beside them."""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from collector import keys
from collector.prepared import PreparedSelect

NODE_DEFAULT_PORT = 9002
# Node ids are a 32-bit integer column (PostgreSQL); "0" is the seed's "all nodes".
NODE_ID_MAX = 2**31 - 1
# last_used is written at most this often per key: one cheap UPDATE a minute.
LAST_USED_EVERY = timedelta(seconds=60)
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def parse_node_id(text: str) -> int:
    """A node number from its text (ASCII digits, 1 to NODE_ID_MAX); ValueError otherwise."""
    text = text.strip()
    # ASCII only: str.isdigit() also takes "²", which int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or not 0 < int(text) <= NODE_ID_MAX:
        raise ValueError(f"{text[:20]!r} is not a node number")
    return int(text)


ALL_NODES = "all"
NODE_SELECTION = "invalid node_id: a node number is required (or a comma-separated list of them, or all)"


def parse_node_selection(text: str) -> list[int] | None:
    """``node_id`` as asked: node numbers in the order given (each once), or None for ``all``.

    ValueError (with the message to show) when it is not one of those forms.
    """
    text = text.strip()
    if text.lower() == ALL_NODES:
        return None
    ids: list[int] = []
    for part in text.split(","):
        node_id = parse_node_id(part)  # ValueError for an empty or bad part
        if node_id not in ids:
            ids.append(node_id)
    return ids


def normalize_address(text: str) -> str:
    """``host:port`` from ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address (port 9002 by default)."""
    text = text.strip()
    host, port = text, str(NODE_DEFAULT_PORT)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValidationError(f"{text!r} is not host:port")
        port = rest[1:] if rest else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValidationError(f"{text!r}: the port must be a number from 1 to 65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ValidationError(f"{text!r}: {host!r} is neither an IP address nor a host name") from None
        return f"{host.lower()}:{int(port)}"
    return f"[{ip}]:{int(port)}" if ip.version == 6 else f"{ip}:{int(port)}"


class Node(models.Model):
    """A sensor the collector proxies to, by the seed's numeric id."""

    SCHEMES = (("http", "http"), ("https", "https"))

    id = models.PositiveIntegerField(
        primary_key=True,
        validators=[MinValueValidator(1), MaxValueValidator(NODE_ID_MAX)],
        help_text='The seed\'s node number; "0" is reserved (it meant "all nodes").',
    )
    name = models.CharField(max_length=100, blank=True)
    address = models.CharField(max_length=270, help_text="host:port of the node API (port 9002 when omitted)")
    scheme = models.CharField(max_length=5, choices=SCHEMES, default="http")
    active = models.BooleanField(default=True, help_text="An inactive node is not listed nor queried.")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.id} {self.name or self.address}".rstrip()

    def clean(self) -> None:
        self.address = normalize_address(self.address)

    def save(self, *args, **kwargs) -> None:
        self.address = normalize_address(self.address)
        super().save(*args, **kwargs)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.address}/{path.lstrip('/')}"


class KeyProblem(Exception):
    """A presented key cannot be used; the message says why (never the key)."""


class NoSuchNodes(ValueError):
    """A key was to be granted nodes that do not exist; ``node_ids`` names them."""

    def __init__(self, node_ids: list[int]) -> None:
        super().__init__(f"no such node: {', '.join(map(str, node_ids))}")
        self.node_ids = node_ids


class KeyInfo(TypedDict):
    """What /keys says about a key (never the key itself)."""

    name: str
    owner: str
    admin: bool
    all_nodes: bool
    nodes: list[str]
    active: bool
    created: datetime
    last_used: datetime | None
    expires: datetime | None


class ApiKeyQuerySet(models.QuerySet):
    def authenticate(self, presented: str) -> ApiKey:
        """The active key matching ``presented``, or KeyProblem."""
        if not keys.looks_like_key(presented.strip()):
            raise KeyProblem("unknown API key")
        digest = keys.key_hash(presented)
        found = _KEY_BY_HASH.rows(digest, db=self.db)
        key = found[0] if found else None
        # The lookup is by an indexed hash; compare it again in constant time.
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            raise KeyProblem("unknown API key")
        if not key.active:
            raise KeyProblem("this API key has been revoked")
        if key.expires is not None and key.expires <= timezone.now():
            raise KeyProblem("this API key has expired")
        key.touch()
        return key

    @transaction.atomic
    def create_key(
        self,
        name: str,
        *,
        admin: bool = False,
        all_nodes: bool = False,
        node_ids: Iterable[int] = (),
        owner: str = "",
    ) -> tuple[ApiKey, str]:
        """A new key with its grants; returns the row and the key (shown once, never stored).

        NoSuchNodes when a node to grant does not exist (nothing is created then).
        """
        node_ids = list(node_ids)
        nodes = list(Node.objects.filter(pk__in=node_ids))
        missing = sorted(set(node_ids) - {node.pk for node in nodes})
        if missing:
            raise NoSuchNodes(missing)
        row, key = self.model.issue(name, admin=admin, all_nodes=all_nodes, owner=owner)
        row.nodes.set(nodes)
        return row, key


class NodeGrants:
    """What a grant allows, the same for an API key and a web page user's grant (``admin``,
    ``all_nodes`` and ``nodes`` are the model's fields)."""

    admin: bool
    all_nodes: bool
    nodes: Any
    pk: Any
    who = "this API key"  # who holds the grant, as an answer names it

    @property
    def holder(self) -> str:
        """Who holds the grant, for per-holder limits: ``key:<id>`` or ``user:<id>``."""
        raise NotImplementedError

    def log_identity(self) -> tuple[str, Any]:
        """(key prefix, web page user) as the request log records who asked."""
        raise NotImplementedError

    @property
    def rate_id(self) -> int:
        """The number its requests are counted under (``collector.limits.RequestRate``)."""
        raise NotImplementedError

    @property
    def every_node(self) -> bool:
        return self.admin or self.all_nodes

    def may_query_all(self, node_ids: Iterable[int]) -> bool:
        """Whether every node of ``node_ids`` is granted (one query at most)."""
        wanted = sorted(set(node_ids))
        if self.every_node or not wanted:
            return True
        return len(self.granted_among(wanted)) == len(wanted)

    def granted_among(self, node_ids: list[int]) -> list[Node]:
        """The nodes of ``node_ids`` (active or not) this grant names, in id order; asked once per request."""
        asked = getattr(self, "_granted_among", None)
        if asked is None or asked[0] != node_ids:
            relation = type(self)._meta.get_field("nodes").related_query_name()  # type: ignore[attr-defined]
            found = _GRANTED[relation].rows(self.pk, *node_ids)
            self._granted_among = asked = (list(node_ids), found)
        return asked[1]

    def queryable_nodes(self) -> models.QuerySet[Node]:
        nodes = Node.objects.all() if self.every_node else self.nodes.all()
        return nodes.filter(active=True).order_by("id")

    def node_list(self) -> list[str]:
        """The seed's view of the nodes granted: ``["0"]`` for admin, else node ids."""
        if self.admin:
            return ["0"]
        if self.all_nodes:
            return [str(node_id) for node_id in Node.objects.filter(active=True).values_list("id", flat=True)]
        # Filtered here rather than in SQL, so that a prefetched nodes list is used.
        return [str(node.id) for node in sorted(self.nodes.all(), key=lambda n: n.id) if node.active]


class ApiKey(NodeGrants, models.Model):
    """A client's key: stored as a keyed hash, shown once at creation."""

    name = models.CharField(max_length=100)
    owner = models.CharField(max_length=200, blank=True, help_text="Who answers for this key.")
    prefix = models.CharField(
        max_length=16, unique=True, editable=False, help_text="The key's first characters."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    admin = models.BooleanField(
        default=False, help_text='Every node, and the list of keys (the seed\'s node "0").'
    )
    all_nodes = models.BooleanField(default=False, help_text="Every node, present and future.")
    nodes = models.ManyToManyField(Node, blank=True, related_name="keys", help_text="Nodes granted.")
    active = models.BooleanField(default=True, help_text="Unset to revoke the key.")
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    expires = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["created", "id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, name: str, **fields) -> tuple[ApiKey, str]:
        """Create a key with a fresh random value; returns the row and the key, which is not kept."""
        row = cls(name=name, **fields)
        return row, row.save_with_new_key()

    def save_with_new_key(self) -> str:
        """Save this new row under a fresh random key; returns the key, which is not kept."""
        for _ in range(5):
            key = keys.generate_key()
            self.set_key(key)
            try:
                with transaction.atomic():
                    self.save(force_insert=True)
            except IntegrityError:
                continue  # shown prefixes collide once in billions: draw again
            return key
        raise IntegrityError("could not draw a key with a unique prefix")

    def set_key(self, key: str) -> None:
        self.prefix = keys.shown_prefix(key)
        self.key_hash = keys.key_hash(key)

    def touch(self) -> None:
        """Record use, at most once a minute, with one conditional UPDATE (no race, no lock)."""
        now = timezone.now()
        if self.last_used is not None and now - self.last_used < LAST_USED_EVERY:
            return
        stale = Q(last_used__isnull=True) | Q(last_used__lt=now - LAST_USED_EVERY)
        ApiKey.objects.filter(stale, pk=self.pk).update(last_used=now)
        self.last_used = now

    @property
    def holder(self) -> str:
        return f"key:{self.pk}"

    @property
    def rate_id(self) -> int:
        return self.pk

    def log_identity(self) -> tuple[str, Any]:
        return self.prefix, None

    def to_dict(self) -> KeyInfo:
        """This key as /keys lists it."""
        return KeyInfo(
            name=self.name,
            owner=self.owner,
            admin=self.admin,
            all_nodes=self.all_nodes,
            nodes=self.node_list(),
            active=self.active,
            created=self.created,
            last_used=self.last_used,
            expires=self.expires,
        )


# The hot path's lookups (collector.prepared): a key by its hash; the nodes asked, active; the nodes
# asked that a grant names (by the grant's relation: ``keys`` for a key, ``user_grants`` for a user).
_KEY_BY_HASH = PreparedSelect(lambda digest: ApiKey.objects.filter(key_hash=digest).order_by()[:1])
ACTIVE_NODES = PreparedSelect(lambda *ids: Node.objects.filter(pk__in=ids, active=True).order_by("id"))
_GRANTED = {
    relation: PreparedSelect(
        lambda pk, *ids, relation=relation: Node.objects.filter(**{relation: pk})
        .filter(pk__in=ids)
        .order_by("id")
    )
    for relation in ("keys", "user_grants")
}

# Defined beside, registered here: Django finds an app's models in its models module.
from collector.jobs.model import Export  # noqa: E402
from collector.limits import KeyStream, RequestRate  # noqa: E402
from collector.requestlog import NodeOutcome, RequestLog  # noqa: E402
from collector.usergrants import UserGrant  # noqa: E402

__all__ = [
    "ApiKey",
    "Export",
    "KeyStream",
    "Node",
    "NodeGrants",
    "NodeOutcome",
    "RequestLog",
    "RequestRate",
    "NoSuchNodes",
    "UserGrant",
]
