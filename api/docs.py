"""Swagger UI's own files, shipped with drf-spectacular-sidecar, so /docs works with no internet."""

from __future__ import annotations

from pathlib import Path

import drf_spectacular_sidecar
from django.views.static import serve

from api.errors import error_response

# Swagger UI asks for its files under STATIC_URL; this is the route that answers them.
ASSET_ROUTE = "static/drf_spectacular_sidecar/<path:path>"
_STATIC = Path(drf_spectacular_sidecar.__file__).parent / "static" / "drf_spectacular_sidecar"
# The only files served: the docs' own, listed once at start.
_FILES = frozenset(str(p.relative_to(_STATIC)) for p in _STATIC.rglob("*") if p.is_file())


def docs_asset(request, path: str):
    """One of Swagger UI's files, or a JSON 404."""
    if path not in _FILES:
        return error_response("not found", 404)
    return serve(request, path, document_root=str(_STATIC))
