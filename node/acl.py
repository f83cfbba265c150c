"""Who may call a node: allowed networks, denied networks, and the shared secret."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from rest_framework.permissions import BasePermission

from api.client import caller, in_any, plain_address
from api.errors import refusal_response
from api.metrics import scrape_refused
from engine.selection.selectors import IPAddress

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


def refusal(request) -> tuple[str, str] | None:
    """Why this request is refused: (for the log, for the caller), never with a secret; None when it
    may proceed. The caller is told what it can know anyway (its own address, its own header), or,
    at a trusted proxy's address (on this host), that the proxy forwarded for nobody."""
    ip, unknown = caller(request)
    if ip is None:
        return f"caller unknown: {unknown}", f"caller unknown: {unknown}"
    if not address_allowed(ip):
        peer = request.META.get("REMOTE_ADDR", "")
        via = f" (via {peer})" if str(ip) != peer else ""
        return f"address {ip}{via} not allowed", f"address {ip} is not allowed"
    if not secret_ok(request):
        given = "wrong" if request.META.get("HTTP_X_PAR_NODE_SECRET") else "missing"
        return f"{given} node secret from {ip}", f"{given} node secret (X-PAR-Node-Secret)"
    return None


def refused(request) -> str | None:
    """What a refused caller is told (the refusal is logged, never with the secret); None: it may proceed."""
    reason = refusal(request)
    if reason is None:
        return None
    log.warning("refused %s %r: %s", request.method, request.path[:200], reason[0])
    return f"{AllowedCaller.message}: {reason[1]}"


def caller_allowed(request) -> bool:
    """Whether the caller may have an answer; a refusal is logged, never with the secret."""
    return refused(request) is None


class AllowedCaller(BasePermission):
    """The caller's address is allowed (and not denied), and it holds the node secret."""

    message = "this node does not answer this caller"

    def has_permission(self, request, view) -> bool:
        said = refused(request)
        if said is not None:
            self.message = said
        return said is None


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
        scrape = request.path == "/metrics"
        said = scrape_refused(request) if scrape else refused(request)
        if said is not None:
            return refusal_response(said, 403, "scraper_refused" if scrape else "caller_refused")
        return self.get_response(request)
