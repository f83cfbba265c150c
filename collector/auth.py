"""Who is asking, and what they may do: DRF authentication, permission and throttle classes.

A request is made under a grant: an API key, or the grant of a web page user logged in with a
Django account (``SessionGrantAuthentication``); both have the same shape (``NodeGrants``), so
every permission below judges them alike. Reusable by any collector view (plugins included)::

    authentication_classes = [ApiKeyAuthentication, SessionGrantAuthentication]
    permission_classes = [HasValidKey]
    throttle_classes = [ApiKeyThrottle]
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from collector.limits import RequestRate
from collector.models import ApiKey, KeyProblem, UserGrant

SCHEME = "Api-Key"
QUERY_PARAM = "api_key"  # the seed's clients put the key in the query string
HEADER = "HTTP_X_API_KEY"


@dataclass(frozen=True)
class KeyHolder:
    """``request.user`` of a request made with a valid key."""

    key: ApiKey
    is_authenticated = True
    is_anonymous = False

    def __str__(self) -> str:
        return f"API key {self.key.prefix}"


def presented_key(request) -> str | None:
    """The key a request carries: Authorization header, X-Api-Key header, then the api_key parameter.

    None when there is none; AuthenticationFailed when the Authorization header
    is ours but malformed.
    """
    words = get_authorization_header(request).split()
    if words and words[0].decode("latin-1").lower() == SCHEME.lower():
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                f"invalid Authorization header: use 'Authorization: {SCHEME} <key>'"
            )
        return words[1].decode("latin-1")
    header = request.META.get(HEADER, "").strip()
    if header:
        return header
    param = request.query_params.get(QUERY_PARAM, "").strip()
    return param or None


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Api-Key <key>``, ``X-Api-Key: <key>`` or ``?api_key=<key>``."""

    def authenticate(self, request) -> tuple[KeyHolder, ApiKey] | None:
        given = presented_key(request)
        if given is None:
            return None
        try:
            key = ApiKey.objects.authenticate(given)
        except KeyProblem as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return KeyHolder(key), key

    def authenticate_header(self, request) -> str:
        return f'{SCHEME} realm="collector"'


class SessionGrantAuthentication(SessionAuthentication):
    """A web page user logged in with a Django account: their UserGrant stands where a key would.

    DRF's session authentication: an active user of the session, CSRF checked for unsafe methods.
    """

    def authenticate(self, request) -> tuple[object, UserGrant] | None:
        found = super().authenticate(request)
        if found is None:
            return None
        user, _ = found
        return user, UserGrant.of(user)


def request_key(request) -> ApiKey | UserGrant | None:
    """The grant a request is made under: its API key, or its web page user's grant."""
    auth = request.auth
    return auth if isinstance(auth, (ApiKey, UserGrant)) else None


class HasValidKey(BasePermission):
    """The request carries a valid key (any key)."""

    def has_permission(self, request, view) -> bool:
        if request_key(request) is None:
            raise exceptions.NotAuthenticated("a valid API key is required")
        return True


class IsAdminKey(BasePermission):
    """The key is an admin key (the seed's node "0")."""

    message = "this request needs an admin key"

    def has_permission(self, request, view) -> bool:
        key = request_key(request)
        return key is not None and key.admin


class HasNodeGrant(BasePermission):
    """The key may query every node the view names (``view.requested_node_ids(request)``, None: all)."""

    message = "this API key may not query that node"

    def has_permission(self, request, view) -> bool:
        key = request_key(request)
        if key is None:
            return False
        node_ids = view.requested_node_ids(request)
        several = node_ids is not None and len(node_ids) > 1
        self.message = f"{key.who} may not query {'every node asked' if several else 'that node'}"
        return node_ids is None or key.may_query_all(node_ids)


def parse_rate(rate: str) -> tuple[int, int]:
    """A DRF rate such as ``"100/min"``: (requests allowed, period in seconds), read as DRF reads it."""
    # DRF's parser uses nothing of its throttle; a rate that is not None gives both numbers.
    allowed, period = SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]
    assert allowed is not None and period is not None
    return allowed, period


class ApiKeyThrottle(BaseThrottle):
    """At most ``PAR_KEY_RATE`` requests per minute per key or web page user (DRF rate ``api_key``), across workers.

    Counted in the database, each worker claiming a share of the window at once (collector.limits.RequestRate).
    """

    scope = "api_key"

    def get_rate(self) -> str | None:
        # Read at request time, so a changed setting (tests, reloads) is seen.
        # The stubs type DRF's rates as numbers; they are strings such as "100/min".
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)  # type: ignore[return-value]

    def allow_request(self, request, view) -> bool:
        rate = self.get_rate()
        key = request_key(request)
        if rate is None or key is None:
            return True  # unauthenticated requests are refused before they cost anything
        # A web page user is counted as a key is: the page's calls share the nodes and the database.
        allowed, period = parse_rate(rate)
        admitted, self._wait = RequestRate.admit(key.rate_id, key.prefix or key.holder, allowed, period)
        return admitted

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
