"""What a collector keeps: API keys (hashed), nodes and grants, and the request log."""

from __future__ import annotations

import hmac
import ipaddress
import re
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from collector import keys

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


class ApiKeyQuerySet(models.QuerySet):
    def authenticate(self, presented: str) -> ApiKey:
        """The active key matching ``presented``, or KeyProblem."""
        if not keys.looks_like_key(presented.strip()):
            raise KeyProblem("unknown API key")
        digest = keys.key_hash(presented)
        key = self.filter(key_hash=digest).first()
        # The lookup is by an indexed hash; compare it again in constant time.
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            raise KeyProblem("unknown API key")
        if not key.active:
            raise KeyProblem("this API key has been revoked")
        if key.expires is not None and key.expires <= timezone.now():
            raise KeyProblem("this API key has expired")
        key.touch()
        return key


class ApiKey(models.Model):
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
    def every_node(self) -> bool:
        return self.admin or self.all_nodes

    def may_query(self, node_id: int) -> bool:
        return self.every_node or self.nodes.filter(pk=node_id).exists()

    def queryable_nodes(self) -> models.QuerySet[Node]:
        nodes = Node.objects.all() if self.every_node else self.nodes.all()
        return nodes.filter(active=True).order_by("id")

    def node_list(self) -> list[str]:
        """The seed's view of a key's nodes: ``["0"]`` for admin, else node ids."""
        if self.admin:
            return ["0"]
        if self.all_nodes:
            return [str(node_id) for node_id in Node.objects.filter(active=True).values_list("id", flat=True)]
        # Filtered here rather than in SQL, so that a prefetched nodes list is used.
        return [str(node.id) for node in sorted(self.nodes.all(), key=lambda n: n.id) if node.active]


class RequestLog(models.Model):
    """One /data.pcap asked: who pulled which packets, from where, and how it ended."""

    time = models.DateTimeField(default=timezone.now, db_index=True)
    key_prefix = models.CharField(max_length=16, db_index=True)
    node = models.PositiveIntegerField("node id", null=True, blank=True)
    src_addr = models.GenericIPAddressField(null=True, blank=True)
    src_port = models.PositiveIntegerField(null=True, blank=True)
    dst_addr = models.GenericIPAddressField(null=True, blank=True)
    dst_port = models.PositiveIntegerField(null=True, blank=True)
    proto = models.PositiveSmallIntegerField(null=True, blank=True, help_text="empty: TCP, UDP or SCTP")
    start = models.DateTimeField("window start", null=True, blank=True)
    end = models.DateTimeField("window end", null=True, blank=True)
    status = models.PositiveSmallIntegerField(help_text="HTTP status sent to the client")
    error = models.CharField(max_length=300, blank=True, help_text="why it failed, or empty")
    bytes_sent = models.BigIntegerField(default=0)
    duration = models.FloatField("duration (s)", default=0.0)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        verbose_name = "request log entry"
        verbose_name_plural = "request log"

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.key_prefix} node {self.node} {self.status}"

    @property
    def flow(self) -> str:
        if self.src_addr is None:
            return ""
        return f"{self.src_addr}:{self.src_port} <-> {self.dst_addr}:{self.dst_port}"
