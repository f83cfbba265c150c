"""Who is calling: the socket peer, or behind trusted proxies the address they forward for.

django-ipware picks the caller out of ``X-Forwarded-For``, and only once the socket peer is known
to be one of our proxies (``PAR_TRUSTED_PROXIES``, CIDRs): from anyone else no forwarding header
is read at all, and none but ``X-Forwarded-For`` ever is (ipware would otherwise fall back to
``X-Real-IP``, ``Forwarded`` and the like, which any client can write). ipware's trusted-proxy
list matches by position in the chain, so the number of our proxies at the chain's end is
counted here by network and given to it as its proxy count.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from ipware import get_client_ip

from engine.selection.selectors import IPAddress

# A forwarded chain longer than this is not a real deployment's.
_MAX_HOPS = 16


def plain_address(ip: IPAddress) -> IPAddress:
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
        return plain_address(ipaddress.ip_address(text))
    except ValueError:
        return None


def in_any(ip: IPAddress, networks: Iterable) -> bool:
    return any(ip in net for net in networks)


def client_ip(request) -> IPAddress | None:
    """The caller's address: the socket peer, or, behind trusted proxies, whom they forward for.

    X-Forwarded-For is read only when the socket peer is in PAR_TRUSTED_PROXIES
    (none by default), and then from the right: each proxy appends the address
    it saw, so the first entry that is not one of our proxies is the caller.
    Entries left of it were written by the caller and are never believed.
    None when the caller cannot be known (see ``caller`` for why).
    """
    return caller(request)[0]


def client_address(request) -> str | None:
    """``client_ip`` as text (what django-axes counts login failures by), None when unknown."""
    ip = client_ip(request)
    return str(ip) if ip is not None else None


def caller(request) -> tuple[IPAddress | None, str]:
    """The caller's address, or None and why it cannot be known (for the log)."""
    peer = parse_hop(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.PAR_TRUSTED_PROXIES
    if peer is None or not in_any(peer, proxies):
        return peer, "no readable peer address"
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    texts = [text for text in forwarded.split(",") if text.strip()]
    if not texts:
        # A proxy forwards for someone: taking the proxy itself as the caller would let anyone
        # in through it when it runs on an allowed address (nginx on the node host, loopback).
        return None, f"trusted proxy {peer} sent no X-Forwarded-For"
    # Our proxies at the chain's end, after the peer: the caller is the first entry from the right
    # that is not one of them. Entries left of it were written by the caller: never read here.
    ours, window = 0, texts[-_MAX_HOPS:]
    for text in reversed(window):
        hop = parse_hop(text)
        if hop is None:
            return None, f"trusted proxy {peer} sent an unreadable X-Forwarded-For"
        if not in_any(hop, proxies) or ours == len(window) - 1:
            break
        ours += 1
    found, _routable = get_client_ip(
        request,
        proxy_order="left-most",
        proxy_count=ours,
        request_header_order=["HTTP_X_FORWARDED_FOR"],
        strict=False,
    )
    if found is None:
        return None, f"trusted proxy {peer} forwarded for no usable address"
    return plain_address(ipaddress.ip_address(found)), ""
