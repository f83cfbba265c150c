"""Who may call a node: allowed networks, denied networks, and the shared secret."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from rest_framework.permissions import BasePermission

from api.client import caller, in_any, plain_address
from api.errors import error_response
from api.metrics import SCRAPER_REFUSED, scraper_allowed
from engine.flow import IPAddress

log = logging.getLogger("node.acl")


def address_allowed(ip: IPAddress | None) -> bool:
    if ip is None:
        return False
    ip = plain_address(ip)
    if in_any(ip, settings.PAR_NODE_DENY):
        return False
    return in_any(ip, settings.PAR_NODE_ALLOW)


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
    ip, unknown = caller(request)
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


class RefuseOtherCallers:
    """Middleware, first on a node: a caller the ACL refuses gets its 403 before anything else runs.

    Nothing of the request but its peer (and, behind trusted proxies, X-Forwarded-For) is read
    first, so a refused caller with a bad Host header is a 403 and one log line, never Django's
    DisallowedHost report; the views' AllowedCaller permission stays as the rule's second check.
    /metrics answers scrapers by PAR_METRICS_ALLOW instead (a scraper is no collector).
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/metrics":
            if not scraper_allowed(request):
                return error_response(SCRAPER_REFUSED, 403)
        elif not caller_allowed(request):
            return error_response(AllowedCaller.message, 403)
        return self.get_response(request)
