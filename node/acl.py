"""Who may call a node: allowed networks, denied networks, and the shared secret."""

from __future__ import annotations

import hmac
import ipaddress
import logging

from django.conf import settings
from ipware import get_client_ip
from rest_framework.permissions import BasePermission

log = logging.getLogger("node.acl")


def client_ip(request) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The caller's address: the socket peer, unless it is a trusted proxy."""
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return None
    if not any(peer in net for net in settings.PAR_TRUSTED_PROXIES):
        return peer  # forwarded headers from anyone else are ignored
    # The peer is our own reverse proxy: the address it appended is the caller.
    forwarded, _routable = get_client_ip(request, proxy_order="right-most", proxy_count=1)
    try:
        return ipaddress.ip_address(forwarded) if forwarded else peer
    except ValueError:
        return None


def address_allowed(ip) -> bool:
    if ip is None:
        return False
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if any(ip in net for net in settings.PAR_NODE_DENY):
        return False
    return any(ip in net for net in settings.PAR_NODE_ALLOW)


def secret_ok(request) -> bool:
    expected = settings.PAR_NODE_SECRET
    if not expected:
        return True
    given = request.META.get("HTTP_X_PAR_NODE_SECRET", "")
    return hmac.compare_digest(given.encode(), expected.encode())


class AllowedCaller(BasePermission):
    """The caller's address is allowed (and not denied), and it holds the node secret."""

    message = "this node does not answer this caller"

    def has_permission(self, request, view) -> bool:
        ip = client_ip(request)
        if not address_allowed(ip):
            log.warning("refused %s %s: address %s not allowed", request.method, request.path, ip)
            return False
        if not secret_ok(request):
            log.warning(
                "refused %s %s from %s: missing or wrong node secret", request.method, request.path, ip
            )
            return False
        return True
