"""API key material: generation, canonical form, and the keyed hash that is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.conf import settings

NEW_KEY_PREFIX = "par_"
# 32 random bytes = 256 bits; token_urlsafe gives 43 characters.
NEW_KEY_BYTES = 32
# The shown prefix: "par_" and 8 random characters (48 bits) of new keys,
# 8 hex digits (32 of 122 random bits) of the seed's UUID keys.
SHOWN_CHARS = 8
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
# New keys have 43 characters after "par_"; the bound keeps an absurdly long value from being hashed.
_NEW = re.compile(r"par_[A-Za-z0-9_-]{40,64}")


def generate_key() -> str:
    """A new key: ``par_`` and 43 url-safe characters (256 random bits)."""
    return NEW_KEY_PREFIX + secrets.token_urlsafe(NEW_KEY_BYTES)


def is_uuid_key(text: str) -> bool:
    return bool(_UUID.fullmatch(text))


def canonical(text: str) -> str:
    """The form a key is hashed in: the seed's UUID keys in lowercase, others as given."""
    text = text.strip()
    return text.lower() if is_uuid_key(text) else text


def looks_like_key(text: str) -> bool:
    """Whether ``text`` has the shape of a key we issue or import (cheap check before a lookup)."""
    return bool(_UUID.fullmatch(text) or _NEW.fullmatch(text))


def shown_prefix(key: str) -> str:
    """The part of a key shown in /keys and the admin: too short to guess the rest from."""
    key = canonical(key)
    if key.startswith(NEW_KEY_PREFIX):
        return key[: len(NEW_KEY_PREFIX) + SHOWN_CHARS]
    return key[:SHOWN_CHARS]


def key_hash(key: str) -> str:
    """HMAC-SHA256 of the canonical key under the server's pepper, as hex."""
    pepper = settings.PAR_KEY_PEPPER.encode()
    return hmac.new(pepper, canonical(key).encode(), hashlib.sha256).hexdigest()
