"""The routes a server answers, with their parameters, for GET /routes."""

from __future__ import annotations

import re

from django.urls import URLPattern, URLResolver, get_resolver

_PATH_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def _walk(patterns, prefix: str = ""):
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route.startswith("admin/"):
                continue  # the admin site is for people, not API clients
            yield from _walk(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route, entry.callback


def list_routes(urlconf: str | None = None) -> list[dict]:
    """``[{"path", "methods", "params", "query"}]`` for every API route of ``urlconf``.

    ``params`` are the path's placeholders; ``query`` the query parameters a
    view declares in its ``query_params`` attribute.
    """
    routes = []
    for route, callback in _walk(get_resolver(urlconf).url_patterns):
        view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        methods = []
        if view_class is not None:
            # HEAD goes with every GET (HTTP), OPTIONS with every route: neither is listed.
            methods = [
                m.upper()
                for m in view_class.http_method_names
                if m not in ("options", "head") and hasattr(view_class, m)
            ]
        routes.append(
            {
                "path": "/" + route,
                "methods": methods or ["GET"],
                "params": _PATH_PARAM.findall(route),
                "query": list(getattr(view_class, "query_params", ())),
            }
        )
    return routes
