"""Who may call a node: allowed networks, denied networks, and the shared secret."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable

from django.conf import settings
from rest_framework.permissions import BasePermission

from node.pcap.flow import IPAddress

log = logging.getLogger("node.acl")

# A forwarded chain longer than this is not a real deployment's.
_MAX_HOPS = 16


def _plain(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, dual-stack sockets) as IPv4."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def parse_hop(text: str) -> IPAddress | None:
    """One X-Forwarded-For entry: ``10.0.0.1``, ``10.0.0.1:5000``, ``2001:db8::1`` or ``[2001:db8::1]:443``."""
    text = text.strip()
    port = ""
    if text.startswith("["):
        text, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")  # IPv4 with a port
    if port and not (port.isascii() and port.isdigit()):
        return None
    try:
        return _plain(ipaddress.ip_address(text))
    except ValueError:
        return None


def _in_any(ip: IPAddress, networks: Iterable) -> bool:
    return any(ip in net for net in networks)


def client_ip(request) -> IPAddress | None:
    """The caller's address: the socket peer, or, behind trusted proxies, whom they forward for.

    X-Forwarded-For is read only when the socket peer is in PAR_TRUSTED_PROXIES
    (none by default), and then from the right: each proxy appends the address
    it saw, so the first entry that is not one of our proxies is the caller.
    Entries left of it were written by the caller and are never believed.
    None when the caller cannot be known (see ``_caller`` for why).
    """
    return _caller(request)[0]


def _caller(request) -> tuple[IPAddress | None, str]:
    """The caller's address, or None and why it cannot be known (for the log)."""
    peer = parse_hop(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.PAR_TRUSTED_PROXIES
    if peer is None or not _in_any(peer, proxies):
        return peer, "no readable peer address"
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop for hop in forwarded.split(",") if hop.strip()][-_MAX_HOPS:]
    if not hops:
        # A proxy forwards for someone: taking the proxy itself as the caller would let anyone
        # in through it when it runs on an allowed address (nginx on the node host, loopback).
        return None, f"trusted proxy {peer} sent no X-Forwarded-For"
    caller = peer
    for text in reversed(hops):
        if not _in_any(caller, proxies):
            break
        caller = parse_hop(text)
        if caller is None:
            return None, f"trusted proxy {peer} sent an unreadable X-Forwarded-For"
    return caller, ""


def address_allowed(ip: IPAddress | None) -> bool:
    if ip is None:
        return False
    ip = _plain(ip)
    if _in_any(ip, settings.PAR_NODE_DENY):
        return False
    return _in_any(ip, settings.PAR_NODE_ALLOW)


def secret_ok(request) -> bool:
    """The X-PAR-Node-Secret header equals PAR_NODE_SECRET (compared in constant time), if one is set."""
    expected = settings.PAR_NODE_SECRET
    if not expected:
        return True
    given = request.META.get("HTTP_X_PAR_NODE_SECRET", "")
    want = expected.encode()
    # Header bytes reach us decoded as latin-1 (PEP 3333); a client may have sent a non-ASCII
    # secret as UTF-8 or as latin-1 (requests does the latter). Both comparisons always run.
    as_text = hmac.compare_digest(given.encode(), want)
    as_utf8 = hmac.compare_digest(given.encode("latin-1", "replace"), want)
    return as_text | as_utf8


def refusal(request) -> str | None:
    """Why this request is refused (for the log, without secrets), or None when the caller may proceed."""
    ip, unknown = _caller(request)
    if ip is None:
        return f"caller unknown: {unknown}"
    if not address_allowed(ip):
        peer = request.META.get("REMOTE_ADDR", "")
        via = f" (via {peer})" if str(ip) != peer else ""
        return f"address {ip}{via} not allowed"
    if not secret_ok(request):
        given = "wrong" if request.META.get("HTTP_X_PAR_NODE_SECRET") else "missing"
        return f"{given} node secret from {ip}"
    return None


def caller_allowed(request) -> bool:
    """Whether the caller may have an answer; a refusal is logged, never with the secret."""
    reason = refusal(request)
    if reason is not None:
        log.warning("refused %s %r: %s", request.method, request.path[:200], reason)
        return False
    return True


class AllowedCaller(BasePermission):
    """The caller's address is allowed (and not denied), and it holds the node secret."""

    message = "this node does not answer this caller"

    def has_permission(self, request, view) -> bool:
        return caller_allowed(request)
