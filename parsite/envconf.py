"""Small helpers that read settings from the environment and fail loudly."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# What the shipped env samples (deploy/*.env.example) hold where a secret must go.
PLACEHOLDER = "change-me"


def refuse_placeholders(prefixes: tuple[str, ...] = ("PAR_", "DJANGO_", "DATABASE_URL")) -> None:
    """Stop on a setting still holding a sample's ``change-me`` placeholder, naming it (never its value)."""
    left = sorted(n for n, v in os.environ.items() if n.startswith(prefixes) and PLACEHOLDER in v.lower())
    if left:
        raise ImproperlyConfigured(
            f"{', '.join(left)} still hold{'s' if len(left) == 1 else ''} the sample's {PLACEHOLDER!r} "
            'placeholder: set a real value (docs/operator.md "Deployment" shows how to generate secrets)'
        )


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """A number (fractions allowed), finite, at least ``minimum``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name} must be a finite number, not {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g}, not {value:g}")
    return value


@overload
def env_list(name: str, default: str = "") -> list[str]: ...
@overload
def env_list(name: str, default: str = "", *, item: Callable[[str], T]) -> list[T]: ...
def env_list(name: str, default: str = "", *, item: Callable[[str], Any] = str) -> list[Any]:
    """A comma-separated list; ``item`` converts (and validates) each entry."""
    raw = os.environ.get(name, default)
    values = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(item(part))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: invalid entry {part!r} ({exc})") from None
    return values


Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Dual-stack sockets show IPv4 callers as ::ffff:a.b.c.d; the ACL unmaps them (api/client.py).
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def env_networks(name: str, default: str = "") -> list[Network]:
    """A comma-separated list of CIDRs (a bare address is a /32 or /128); see ``plain_network``."""
    return env_list(name, default, item=plain_network)


def plain_network(text: str) -> Network:
    """A CIDR; an IPv4-mapped one (``::ffff:10.0.0.0/104``) is the IPv4 network it names (``10.0.0.0/8``).

    Callers' mapped addresses are compared unmapped, so a mapped network left as written would
    never match: in a deny list it would fail open.
    """
    net = ipaddress.ip_network(text, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_path(name: str, default: str | Path) -> Path:
    return Path(os.environ.get(name) or default).expanduser()


def host_time_zone() -> str:
    """The IANA name of this host's time zone: ``TZ`` if it names one, else /etc/localtime, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(os.readlink("/etc/localtime").partition("zoneinfo/")[2])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    for name in candidates:
        if name and _is_zone(name):
            return name
    return "UTC"


def _is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
