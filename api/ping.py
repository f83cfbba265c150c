"""Views shared by both roles."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.conf import settings

from api.version import API_VERSION, VERSION

_STARTED = time.monotonic()


def ping_payload() -> dict:
    """What /ping answers on either role."""
    return {
        "version": VERSION,
        "api_version": API_VERSION,
        "uptime": round(time.monotonic() - _STARTED, 3),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "role": settings.PAR_ROLE,
    }
